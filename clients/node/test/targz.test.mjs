// targz(dir): a base64 string of a gzipped tar that tar itself reads back whole: names (long
// and non-ASCII ones too), contents, modes, directories and symbolic links.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { targz } from '../index.js';

let scratch;
before(() => {
	scratch = mkdtempSync(join(tmpdir(), 'hs-targz-'));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

const longDir = `${'deeply-nested-directory-name/'.repeat(4)}and-one-more-level`;
const longFile = `${longDir}/${'a-file-with-a-long-name-'.repeat(5)}.js`;
const random = randomBytes(100 * 1024 + 3);

function component() {
	const dir = mkdtempSync(join(scratch, 'component-'));
	mkdirSync(join(dir, 'bin'), { recursive: true });
	mkdirSync(join(dir, 'empty'));
	mkdirSync(join(dir, longDir), { recursive: true });
	writeFileSync(join(dir, 'config.yaml'), 'rest: true\n');
	writeFileSync(join(dir, 'bin', 'run.sh'), '#!/bin/sh\necho hi\n');
	chmodSync(join(dir, 'bin', 'run.sh'), 0o755);
	writeFileSync(join(dir, 'café ✓.txt'), 'unicode\n');
	writeFileSync(join(dir, longFile), 'export const deep = true;\n');
	writeFileSync(join(dir, 'random.bin'), random);
	symlinkSync('config.yaml', join(dir, 'link.yaml'));
	return dir;
}

/** Writes the archive to a file; returns its path. */
function archive(base64, name) {
	const file = join(scratch, `${name}.tar.gz`);
	writeFileSync(file, Buffer.from(base64, 'base64'));
	return file;
}

test('the archive is base64 of a gzipped tar that `tar -tzf` lists entry by entry', async () => {
	const dir = component();
	const result = await targz(dir);
	assert.equal(typeof result, 'string');
	assert.match(result, /^[A-Za-z0-9+/]+={0,2}$/);
	const file = archive(result, 'listed');
	const listed = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).trimEnd().split('\n');
	const dirs = longDir.split('/').map((_, i, parts) => `${parts.slice(0, i + 1).join('/')}/`);
	assert.deepEqual(listed.sort(), [
		'bin/', 'bin/run.sh', 'café ✓.txt', 'config.yaml', ...dirs, longFile, 'empty/', 'link.yaml', 'random.bin',
	].sort());
	assert.ok(longFile.length > 100, 'a name past ustar\'s 100 bytes is in the test');
});

test('extracted, it is the directory: contents, modes and links', async () => {
	const dir = component();
	const out = join(scratch, 'out');
	mkdirSync(out);
	execFileSync('tar', ['-xzf', archive(await targz(dir), 'extracted'), '-C', out]);
	assert.equal(readFileSync(join(out, 'config.yaml'), 'utf8'), 'rest: true\n');
	assert.equal(readFileSync(join(out, 'café ✓.txt'), 'utf8'), 'unicode\n');
	assert.equal(readFileSync(join(out, longFile), 'utf8'), 'export const deep = true;\n');
	assert.deepEqual(readFileSync(join(out, 'random.bin')), random);
	assert.equal(statSync(join(out, 'bin', 'run.sh')).mode & 0o777, 0o755);
	assert.ok(statSync(join(out, 'empty')).isDirectory());
	assert.ok(lstatSync(join(out, 'link.yaml')).isSymbolicLink());
	assert.equal(readlinkSync(join(out, 'link.yaml')), 'config.yaml');
});

test('the tar is well formed: ustar headers, valid checksums, two zero blocks at the end', async () => {
	const dir = join(scratch, 'one');
	mkdirSync(dir);
	writeFileSync(join(dir, 'a.txt'), 'hello');
	const tar = gunzipSync(Buffer.from(await targz(dir), 'base64'));
	assert.equal(tar.length, 512 * 4); // header, one block of data, the two end blocks
	const header = tar.subarray(0, 512);
	assert.equal(header.toString('utf8', 0, 5), 'a.txt');
	assert.equal(header.toString('ascii', 257, 263), 'ustar\0');
	assert.equal(parseInt(header.toString('ascii', 124, 135), 8), 5);
	const stored = parseInt(header.toString('ascii', 148, 154), 8);
	const copy = Buffer.from(header);
	copy.fill(0x20, 148, 156);
	assert.equal(stored, copy.reduce((sum, byte) => sum + byte, 0));
	assert.equal(tar.toString('utf8', 512, 517), 'hello');
	assert.ok(tar.subarray(1024).every((byte) => byte === 0));
});

test('an empty directory is an empty archive; a missing one or a file rejects', async () => {
	const dir = join(scratch, 'nothing');
	mkdirSync(dir);
	const file = archive(await targz(dir), 'empty');
	assert.equal(execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }), '');
	await assert.rejects(targz(join(scratch, 'missing')), { code: 'ENOENT' });
	writeFileSync(join(scratch, 'plain'), 'x');
	await assert.rejects(targz(join(scratch, 'plain')), { code: 'ENOTDIR' });
});
