// harper-shard's boot cache: a preload (`NODE_OPTIONS=--require …`) for a Harper that boots from
// a template. Most of a start on an existing ROOTPATH is Node compiling and resolving the same
// ~1,840 files of Harper's package, once on the main thread and again on the worker
// (docs/harper.md, "Boot cache"). The package is installed once and never changes, so both
// can be kept:
//
// - compiled code: each file of the package is compiled through `vm.Script` with V8's code
//   cache, stored under a digest of its path and its source, so a changed file never meets old
//   code (V8 checks only the source's length);
// - resolutions: `require(x)` from a file of the package, answered by a file of the package, is
//   remembered by the requiring directory and `x`.
//
// The template's build runs with HARPER_SHARD_BOOT_PRODUCE=1 and writes both when its main
// thread exits; every copy reads them. Anything outside the package, any call with options,
// anything V8 refuses or cannot compile this way goes to Node's own loader unchanged.
//
// Environment: HARPER_SHARD_BOOT_CACHE_DIR (the cache directory), HARPER_SHARD_BOOT_ROOT (the
// package directory, ending in `/`), HARPER_SHARD_BOOT_PRODUCE, and HARPER_SHARD_BOOT_STATS (a
// file the main thread appends its counts to when it exits, for diagnostics and tests).
'use strict';

const Module = require('node:module');
const vm = require('node:vm');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { isMainThread } = require('node:worker_threads');

const dir = process.env.HARPER_SHARD_BOOT_CACHE_DIR;
const root = process.env.HARPER_SHARD_BOOT_ROOT;
if (dir && root && root.endsWith(path.sep)) {
  install(dir, root, process.env.HARPER_SHARD_BOOT_PRODUCE === '1' && isMainThread);
}

function install(dir, root, produce) {
  const codeDir = path.join(dir, 'code');
  const resolveFile = path.join(dir, 'resolve.json');
  const ours = (file) => typeof file === 'string' && file.startsWith(root);
  const counts = { code: { hit: 0, miss: 0, rejected: 0, passed: 0 }, resolve: { hit: 0, miss: 0 } };
  const resolved = new Map();
  if (!produce) {
    try {
      for (const [key, file] of Object.entries(JSON.parse(readRegular(resolveFile).toString('utf8')))) {
        if (ours(file)) resolved.set(key, file);
      }
    } catch {
      // No map (or an unreadable one): every resolution goes to Node.
    }
  }
  const compiled = produce ? new Map() : null;

  const resolveFilename = Module._resolveFilename;
  Module._resolveFilename = function (request, parent, isMain, options) {
    if (options !== undefined || !parent || !ours(parent.filename) || Module.isBuiltin(request)) {
      return resolveFilename.apply(this, arguments);
    }
    const key = `${path.dirname(parent.filename)}\0${request}`;
    const known = resolved.get(key);
    if (known !== undefined) {
      counts.resolve.hit++;
      return known;
    }
    counts.resolve.miss++;
    const file = resolveFilename.apply(this, arguments);
    if (produce && ours(file)) resolved.set(key, file);
    return file;
  };

  const compile = Module.prototype._compile;
  Module.prototype._compile = function (content, filename, format) {
    // Node's module format, when it already knows one: only CommonJS is compiled here.
    // Node 20 loses a script's `import()` when its code comes from the cache ("A dynamic import
    // callback was not specified"), so a file that may import is compiled by Node itself.
    if ((format !== undefined && format !== 'commonjs') || !ours(filename) || typeof content !== 'string' || content.includes('import(')) {
      counts.code.passed++;
      return compile.apply(this, arguments);
    }
    const source = content.startsWith('#!') ? `//${content.slice(2)}` : content;
    const digest = crypto.createHash('sha256').update(filename).update('\0').update(source).digest('hex');
    const file = path.join(codeDir, digest.slice(0, 40));
    const cachedData = readRegular(file);
    let script;
    try {
      script = new vm.Script(Module.wrap(source), { filename, cachedData });
    } catch {
      // Whatever Node's loader makes of it (an ES module, a syntax error) is its answer to give.
      counts.code.passed++;
      return compile.apply(this, arguments);
    }
    if (cachedData === undefined) counts.code.miss++;
    else if (script.cachedDataRejected) counts.code.rejected++;
    else counts.code.hit++;
    if (compiled) compiled.set(file, script);
    const wrapper = script.runInThisContext({ displayErrors: true });
    return wrapper.call(this.exports, this.exports, requireFor(this), this, filename, path.dirname(filename));
  };

  process.on('exit', () => {
    if (compiled) {
      try {
        fs.mkdirSync(codeDir, { recursive: true });
        for (const [file, script] of compiled) writeAtomically(file, script.createCachedData());
        writeAtomically(resolveFile, JSON.stringify(Object.fromEntries(resolved)));
      } catch {
        // A template without a complete cache boots without one: harper-shard checks the map.
      }
    }
    const stats = process.env.HARPER_SHARD_BOOT_STATS;
    if (stats && isMainThread) {
      try {
        fs.appendFileSync(stats, `${JSON.stringify({ pid: process.pid, produce, ...counts })}\n`);
      } catch {
        // Diagnostics only.
      }
    }
  });
}

// The `require` a module gets from Node's loader, for code compiled here.
function requireFor(module) {
  const require = (id) => module.require(id);
  require.resolve = (request, options) => Module._resolveFilename(request, module, false, options);
  require.resolve.paths = (request) => Module._resolveLookupPaths(request, module);
  require.main = process.mainModule;
  require.extensions = Module._extensions;
  require.cache = Module._cache;
  return require;
}

// A regular file's bytes, or undefined: a FIFO or device put where an entry goes must not hang
// Harper's start (opened without blocking, read only when it is a file).
function readRegular(file) {
  let fd;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    return fs.fstatSync(fd).isFile() ? fs.readFileSync(fd) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function writeAtomically(file, data) {
  const partial = `${file}.${process.pid}.partial`;
  fs.writeFileSync(partial, data);
  fs.renameSync(partial, file);
}
