// targz(dir): the directory as a gzipped tar, base64-encoded, as @harperfast/integration-testing
// returns it for `deploy_component`'s `payload`. A small ustar writer with pax records for what
// ustar cannot hold (long names, big ids or sizes), on node's zlib.
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';

const gzipAsync = promisify(gzip);
const BLOCK = 512;

/** Writes `value` as zero-padded octal with a NUL into a field of `length` bytes, if it fits. */
function octal(header, offset, length, value) {
	const digits = value.toString(8);
	if (digits.length > length - 1) return false;
	header.write(digits.padStart(length - 1, '0'), offset, length - 1, 'ascii');
	header[offset + length - 1] = 0;
	return true;
}

/** A pax extended header's data: `"<len> <key>=<value>\n"` per record, len counting itself. */
function paxData(records) {
	const lines = Object.entries(records).map(([key, value]) => {
		const body = ` ${key}=${value}\n`;
		const bodyBytes = Buffer.byteLength(body);
		let length = bodyBytes + 1;
		while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes;
		return `${length}${body}`;
	});
	return Buffer.from(lines.join(''), 'utf8');
}

function header({ name, mode, uid, gid, size, mtime, type, linkname = '' }) {
	const block = Buffer.alloc(BLOCK);
	const pax = {};
	const nameBytes = Buffer.from(name, 'utf8');
	if (nameBytes.length > 100) pax.path = name;
	block.write(name, 0, Math.min(nameBytes.length, 100), 'utf8');
	octal(block, 100, 8, mode & 0o7777);
	if (!octal(block, 108, 8, uid)) pax.uid = String(uid);
	if (!octal(block, 116, 8, gid)) pax.gid = String(gid);
	if (!octal(block, 124, 12, size)) {
		pax.size = String(size);
		octal(block, 124, 12, 0);
	}
	octal(block, 136, 12, mtime);
	block.write(type, 156, 1, 'ascii');
	const linkBytes = Buffer.from(linkname, 'utf8');
	if (linkBytes.length > 100) pax.linkpath = linkname;
	block.write(linkname, 157, Math.min(linkBytes.length, 100), 'utf8');
	block.write('ustar\u000000', 257, 8, 'ascii');
	checksum(block);
	if (Object.keys(pax).length === 0) return [block];
	const data = paxData(pax);
	const paxHeader = Buffer.alloc(BLOCK);
	const paxName = `PaxHeader/${name}`.slice(0, 100);
	paxHeader.write(paxName, 0, Math.min(Buffer.byteLength(paxName), 100), 'utf8');
	octal(paxHeader, 100, 8, 0o644);
	octal(paxHeader, 108, 8, 0);
	octal(paxHeader, 116, 8, 0);
	octal(paxHeader, 124, 12, data.length);
	octal(paxHeader, 136, 12, mtime);
	paxHeader.write('x', 156, 1, 'ascii');
	paxHeader.write('ustar\u000000', 257, 8, 'ascii');
	checksum(paxHeader);
	return [paxHeader, data, padding(data.length), block];
}

function checksum(block) {
	block.fill(0x20, 148, 156);
	let sum = 0;
	for (const byte of block) sum += byte;
	block.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii');
	block[154] = 0;
	block[155] = 0x20;
}

const padding = (size) => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);

/** Every entry below `root`, depth first, names sorted, as [relative posix path, lstat]. */
async function* walk(root, prefix = '') {
	const names = (await readdir(join(root, prefix))).sort();
	for (const name of names) {
		const relative = prefix ? `${prefix}/${name}` : name;
		const stats = await lstat(join(root, relative));
		yield [relative, stats];
		if (stats.isDirectory()) yield* walk(root, relative);
	}
}

/**
 * Packs and gzips a directory; resolves with the tar.gz as a base64 string. Entries are named
 * relative to the directory (`a.js`, `lib/`, `lib/b.js`); directories, regular files and
 * symbolic links (as links) are packed, sockets and devices are skipped. Rejects if the
 * directory cannot be read.
 *
 * @param {string} dirPath the directory to pack
 * @returns {Promise<string>}
 */
export async function targz(dirPath) {
	const root = await lstat(dirPath);
	if (!root.isDirectory()) {
		const error = new Error(`ENOTDIR: not a directory, targz '${dirPath}'`);
		error.code = 'ENOTDIR';
		throw error;
	}
	const parts = [];
	for await (const [name, stats] of walk(dirPath)) {
		const common = { mode: stats.mode, uid: stats.uid, gid: stats.gid, mtime: Math.floor(stats.mtimeMs / 1000) };
		if (stats.isDirectory()) {
			parts.push(...header({ ...common, name: `${name}/`, size: 0, type: '5' }));
		} else if (stats.isFile()) {
			const data = await readFile(join(dirPath, name));
			parts.push(...header({ ...common, name, size: data.length, type: '0' }), data, padding(data.length));
		} else if (stats.isSymbolicLink()) {
			const linkname = await readlink(join(dirPath, name));
			parts.push(...header({ ...common, name, size: 0, type: '2', linkname }));
		}
	}
	parts.push(Buffer.alloc(BLOCK * 2));
	const compressed = await gzipAsync(Buffer.concat(parts));
	return compressed.toString('base64');
}
