//! Just enough HTTP/1.1 to answer the tool's probes, one request per connection.
//!
//! Operations port: `GET /health` → `200 HarperDB is running.`; `POST /` with
//! `{"operation":"get_configuration"}` → 200 JSON with `rootPath` (proves which instance
//! answered); anything else → a 4xx with a small JSON error. HTTP port: 404 to everything.
//! Other ports: accepted, then closed once the client closes (at most 2 s).
//!
//! Bodies need `Content-Length`. Every response says `Connection: close`, and the server waits for
//! the client to close first (see `await_client_close`).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::args::{Config, Role};
use crate::rootpath::RootPath;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the operations API knows about its instance.
pub struct Api {
    config_json: String,
    /// The `Authorization` value required, unless `AUTHENTICATION_AUTHORIZELOCAL` is true.
    basic_auth: Option<String>,
}

impl Api {
    pub fn new(config: &Config, root: &RootPath) -> Self {
        let port_of = |role: Role| {
            let port = config.ports.iter().find(|p| p.role == role);
            port.map_or_else(|| "null".to_string(), |p| json_string(&p.given))
        };
        let config_json = format!(
            r#"{{"rootPath":{},"http":{{"port":{}}},"operationsApi":{{"network":{{"port":{}}}}},"threads":{{"count":1}},"fakeHarper":{{"pid":{}}}}}"#,
            json_string(&root.path().to_string_lossy()),
            port_of(Role::Http),
            port_of(Role::Operations),
            std::process::id(),
        );
        let credentials = format!(
            "{}:{}",
            config.username.as_deref().unwrap_or_default(),
            config.password.as_deref().unwrap_or_default()
        );
        let basic_auth =
            (!config.authorize_local).then(|| format!("Basic {}", base64(credentials.as_bytes())));
        Api { config_json, basic_auth }
    }
}

pub fn handle(mut stream: TcpStream, role: Role, api: &Api) {
    if role == Role::Other {
        await_client_close(&mut stream);
        return;
    }
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let response = match read_request(&mut stream) {
        Ok(request) if role == Role::Operations => operations(&request, api),
        Ok(_) => Response::error(404, "Not found"),
        Err(response) => response,
    };
    if response.write_to(&mut stream).is_ok() {
        await_client_close(&mut stream);
    }
}

/// Lets the client close first, so the TIME_WAIT state lands on its side and not on our port,
/// where it would make a later probe bind without `SO_REUSEADDR` fail for a minute.
fn await_client_close(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(CLOSE_WAIT));
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn operations(request: &Request, api: &Api) -> Response {
    let path = request.path.split('?').next().unwrap_or_default();
    match (request.method.as_str(), path) {
        ("GET", "/health") => {
            Response::new(200, "text/plain; charset=utf-8", "HarperDB is running.")
        }
        ("POST", "/") => operation(request, api),
        _ => Response::error(404, "Not found"),
    }
}

fn operation(request: &Request, api: &Api) -> Response {
    if let Some(expected) = &api.basic_auth
        && request.header("authorization").map(str::trim) != Some(expected.as_str())
    {
        return Response::error(401, "Login failed");
    }
    let Ok(body) = std::str::from_utf8(&request.body) else {
        return Response::error(400, "The request body is not UTF-8");
    };
    match operation_name(body) {
        Some("get_configuration") => Response::new(200, "application/json", &api.config_json),
        Some(other) => {
            Response::error(400, &format!("Operation '{other}' is not supported by fake-harper"))
        }
        None => Response::error(400, "The request body has no \"operation\""),
    }
}

/// The string value of the `"operation"` key, found without a JSON parser: the fixture only has to
/// recognise `{"operation": "get_configuration", …}`.
fn operation_name(body: &str) -> Option<&str> {
    let key = "\"operation\"";
    let after_key = &body[body.find(key)? + key.len()..];
    let value = after_key.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(&value[..value.find('"')?])
}

fn read_request(stream: &mut impl Read) -> Result<Request, Response> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_HEAD {
            return Err(Response::error(431, "Request headers too large"));
        }
        read_more(stream, &mut buffer)?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut request = parse_head(&head)?;
    let length = content_length(&request)?;
    let mut body = buffer.split_off(head_end + 4);
    while body.len() < length {
        read_more(stream, &mut body)?;
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

fn read_more(stream: &mut impl Read, buffer: &mut Vec<u8>) -> Result<(), Response> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk) {
        Ok(0) => Err(Response::error(400, "Connection closed mid-request")),
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(Response::error(400, &format!("Cannot read the request: {e}"))),
    }
}

fn parse_head(head: &str) -> Result<Request, Response> {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(path), Some(_version)) =
        (request_line.next(), request_line.next(), request_line.next())
    else {
        return Err(Response::error(400, "Malformed request line"));
    };
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok(Request { method: method.to_string(), path: path.to_string(), headers, body: Vec::new() })
}

fn content_length(request: &Request) -> Result<usize, Response> {
    if request.header("transfer-encoding").is_some() {
        return Err(Response::error(
            411,
            "fake-harper needs Content-Length, not Transfer-Encoding",
        ));
    }
    let Some(value) = request.header("content-length") else {
        return Ok(0);
    };
    match value.parse::<usize>() {
        Ok(length) if length <= MAX_BODY => Ok(length),
        Ok(_) => Err(Response::error(413, "Request body too large")),
        Err(_) => Err(Response::error(400, "Malformed Content-Length")),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: &str) -> Self {
        Response { status, content_type, body: body.to_string() }
    }

    fn error(status: u16, message: &str) -> Self {
        Response::new(
            status,
            "application/json",
            &format!(r#"{{"error":{}}}"#, json_string(message)),
        )
    }

    fn write_to(&self, stream: &mut impl Write) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(self.body.as_bytes())?;
        stream.flush()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Unknown",
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding, for the expected `Authorization: Basic` value.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
