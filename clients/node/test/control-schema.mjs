// harper-shard's control protocol schema (docs/control.schema.json, `harper-shard schema
// --control`) and a validator for the part of JSON Schema it uses, so the mock control socket
// checks requests against the tool's own types instead of a copy of their keys. No npm
// dependency: CI runs these tests without an install. A keyword the validator does not know
// is an error, never a silent pass.
import { readFileSync } from 'node:fs';

export const SCHEMA_PATH = new URL('../../../docs/control.schema.json', import.meta.url);
export const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8'));

// Annotations: they say nothing about validity.
const ANNOTATIONS = new Set(['$schema', '$defs', 'title', 'description', 'examples', 'default', 'format']);

const typeOf = (value) => {
	if (value === null) return 'null';
	if (Array.isArray(value)) return 'array';
	if (Number.isInteger(value)) return 'integer';
	return typeof value;
};

const fits = (value, type) => typeOf(value) === type || (type === 'number' && typeof value === 'number');

function resolve(ref) {
	const prefix = '#/$defs/';
	if (!ref.startsWith(prefix) || !(ref.slice(prefix.length) in schema.$defs)) {
		throw new Error(`control-schema: cannot resolve $ref ${ref}`);
	}
	return schema.$defs[ref.slice(prefix.length)];
}

/** The errors of `value` against `node` (a schema or subschema), each with its JSON path. */
export function errors(value, node = schema, path = '') {
	if (node === true) return [];
	if (node === false) return [`${path || '/'}: not allowed`];
	const found = [];
	const at = path || '/';
	for (const [keyword, rule] of Object.entries(node)) {
		switch (keyword) {
			case '$ref':
				found.push(...errors(value, resolve(rule), path));
				break;
			case 'type': {
				const types = Array.isArray(rule) ? rule : [rule];
				if (!types.some((t) => fits(value, t))) found.push(`${at}: ${JSON.stringify(value)} is not ${types.join(' or ')}`);
				break;
			}
			case 'const':
				if (JSON.stringify(value) !== JSON.stringify(rule)) found.push(`${at}: ${JSON.stringify(value)} is not ${JSON.stringify(rule)}`);
				break;
			case 'enum':
				if (!rule.some((r) => JSON.stringify(r) === JSON.stringify(value))) {
					found.push(`${at}: ${JSON.stringify(value)} is not one of ${rule.map((r) => JSON.stringify(r)).join(', ')}`);
				}
				break;
			case 'properties':
				if (typeOf(value) === 'object') {
					for (const [key, sub] of Object.entries(rule)) {
						if (key in value) found.push(...errors(value[key], sub, `${path}/${key}`));
					}
				}
				break;
			case 'additionalProperties':
				if (typeOf(value) === 'object') {
					const known = new Set(Object.keys(node.properties ?? {}));
					for (const key of Object.keys(value).filter((k) => !known.has(k))) {
						found.push(...(rule === false ? [`${at}: unknown field \`${key}\``] : errors(value[key], rule, `${path}/${key}`)));
					}
				}
				break;
			case 'required':
				if (typeOf(value) === 'object') {
					for (const key of rule.filter((k) => !(k in value))) found.push(`${at}: missing field \`${key}\``);
				}
				break;
			case 'items':
				if (Array.isArray(value)) value.forEach((item, i) => found.push(...errors(item, rule, `${path}/${i}`)));
				break;
			case 'minimum':
				if (typeof value === 'number' && value < rule) found.push(`${at}: ${value} is under ${rule}`);
				break;
			case 'maximum':
				if (typeof value === 'number' && value > rule) found.push(`${at}: ${value} is over ${rule}`);
				break;
			case 'minLength':
				if (typeof value === 'string' && [...value].length < rule) found.push(`${at}: shorter than ${rule}`);
				break;
			case 'pattern':
				if (typeof value === 'string' && !new RegExp(rule, 'u').test(value)) found.push(`${at}: ${JSON.stringify(value)} does not match ${rule}`);
				break;
			case 'anyOf':
			case 'oneOf': {
				const each = rule.map((sub) => errors(value, sub, path));
				const passed = each.filter((e) => e.length === 0).length;
				if (passed === 0) {
					found.push(`${at}: matches none of ${keyword} (${each.map((e) => e.join('; ')).join(' | ')})`);
				} else if (keyword === 'oneOf' && passed > 1) {
					found.push(`${at}: matches ${passed} branches of oneOf`);
				}
				break;
			}
			default:
				if (!ANNOTATIONS.has(keyword)) throw new Error(`control-schema: the keyword \`${keyword}\` is not supported (at ${at})`);
		}
	}
	return found;
}

/** The errors of a request line's value against `#/$defs/Request`. */
export const requestErrors = (request) => errors(request, resolve('#/$defs/Request'));

/** The errors of an answer line's value against `#/$defs/Answer`. */
export const answerErrors = (answer) => errors(answer, resolve('#/$defs/Answer'));
