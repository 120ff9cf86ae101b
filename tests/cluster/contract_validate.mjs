// Validates recorded HTTP exchanges against openapi/openapi.yaml (used by test_contract.py).
//
//   node contract_validate.mjs SPEC EXCHANGES.json
//
// EXCHANGES.json is a list of {method, path (as sent, with query), status, headers (lower-case
// names), body_b64}. For each exchange the operation is found by path template and method;
// the status must be listed under that operation (there is no "default" fallback: an
// undocumented status is an error); the Content-Type must be one the response documents;
// a JSON body must validate against the response's schema (JSON Schema 2020-12, ajv); every
// required header must be present, every documented header's value must match its schema,
// and an X-Cloudless-*, Retry-After, Location or Allow header the response does not document
// is an error. A path the spec does not define must be answered like
// components/responses/NotFound, and a method not listed under a defined path like
// components/responses/MethodNotAllowed, with an Allow header naming exactly the documented
// methods.
//
// Prints one JSON object: {errors: [...], observed: {"METHOD /template": [status, ...]},
// documented: {"METHOD /template": [status, ...]}}. Exits 0 even with errors (the caller
// decides); 2 when the inputs cannot be read.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let YAML, Ajv2020, addFormats;
try {
  YAML = require('yaml');
  Ajv2020 = require('ajv/dist/2020').default;
  addFormats = require('ajv-formats').default;
} catch (e) {
  console.error('contract_validate: missing npm packages (' + e.message + '); run `npm ci` at the repository root');
  process.exit(2);
}

const [specPath, exchangesPath] = process.argv.slice(2);
if (!specPath || !exchangesPath) {
  console.error('usage: node contract_validate.mjs SPEC EXCHANGES.json');
  process.exit(2);
}
const spec = YAML.parse(readFileSync(specPath, 'utf8'));
const exchanges = JSON.parse(readFileSync(exchangesPath, 'utf8'));

const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
ajv.addSchema(spec, 'openapi');

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];
const CHECKED_HEADERS = /^(x-cloudless-.*|retry-after|location|allow)$/;

const escapePointer = (s) => s.replace(/~/g, '~0').replace(/\//g, '~1');

// Follows a local $ref; returns {node, pointer} (pointer is a JSON pointer into the spec).
function resolve(node, pointer) {
  for (let hops = 0; node && node.$ref; hops++) {
    if (hops > 20 || !node.$ref.startsWith('#/')) throw new Error('bad $ref ' + node.$ref);
    pointer = node.$ref.slice(1);
    node = pointer
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((o, k) => (o === undefined ? undefined : o[k]), spec);
  }
  return { node, pointer };
}

const validators = new Map();
function validatorAt(pointer) {
  // A JSON pointer in a URI fragment: media types hold spaces, ';' and '=', paths braces.
  const fragment = pointer.split('/').map(encodeURIComponent).join('/');
  if (!validators.has(pointer)) validators.set(pointer, ajv.compile({ $ref: 'openapi#' + fragment }));
  return validators.get(pointer);
}

// Literal paths before templated ones, then the templates with more literal text first. A
// template parameter matches one path segment, except {key}, which may contain '/'.
const routes = Object.keys(spec.paths)
  .map((template) => {
    const parts = template.split(/(\{[^}]+\})/);
    const re = parts
      .map((p) => (p === '{key}' ? '(.+)' : p.startsWith('{') ? '([^/]+)' : p.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
      .join('');
    const literalChars = parts.filter((p) => !p.startsWith('{')).join('').length;
    return { template, re: new RegExp('^' + re + '$'), literal: !template.includes('{'), literalChars };
  })
  .sort((a, b) => Number(b.literal) - Number(a.literal) || b.literalChars - a.literalChars);

function findRoute(path) {
  return routes.find((r) => r.re.test(path));
}

const mediaBase = (t) => t.split(';')[0].trim().toLowerCase();
const normalizeMedia = (t) => t.split(';').map((p) => p.trim().toLowerCase()).join('; ');
const isJson = (t) => /^application\/([a-z.+-]+\+)?json$/.test(mediaBase(t));

function coerceHeader(value, schema) {
  const type = schema && schema.type;
  if (type === 'integer' && /^-?[0-9]+$/.test(value)) return Number(value);
  if (type === 'boolean' && (value === 'true' || value === 'false')) return value === 'true';
  return value;
}

const errors = [];
const observed = {};
const documented = {};
for (const { template } of routes) {
  for (const m of METHODS) {
    const op = spec.paths[template][m];
    if (op) documented[m.toUpperCase() + ' ' + template] = Object.keys(op.responses).map(Number);
  }
}

function checkResponse(ex, label, response, responsePointer) {
  const where = `${ex.method} ${ex.path} -> ${ex.status} (${label})`;
  const { node: resp, pointer } = resolve(response, responsePointer);
  const headers = ex.headers;
  const body = Buffer.from(ex.body_b64, 'base64');

  // Headers.
  const docHeaders = {};
  for (const [name, h] of Object.entries(resp.headers || {})) {
    const { node: header, pointer: hp } = resolve(h, `${pointer}/headers/${escapePointer(name)}`);
    docHeaders[name.toLowerCase()] = true;
    const value = headers[name.toLowerCase()];
    if (value === undefined) {
      if (header.required) errors.push(`${where}: required header ${name} missing`);
      continue;
    }
    const schema = resolve(header.schema, hp + '/schema').node;
    const validate = validatorAt(resolve(header.schema, hp + '/schema').pointer);
    if (!validate(coerceHeader(value, schema)))
      errors.push(`${where}: header ${name}: ${JSON.stringify(value)} ${ajv.errorsText(validate.errors)}`);
  }
  for (const name of Object.keys(headers)) {
    if (CHECKED_HEADERS.test(name) && !docHeaders[name])
      errors.push(`${where}: header ${name} is not documented for this response`);
  }

  // Content type and body.
  const content = resp.content || {};
  const ctype = headers['content-type'];
  if (Object.keys(content).length === 0) {
    if (body.length > 0) errors.push(`${where}: documented without a body, got ${body.length} bytes`);
    return;
  }
  if (!ctype) {
    errors.push(`${where}: no Content-Type; documented: ${Object.keys(content).join(', ')}`);
    return;
  }
  let key = Object.keys(content).find((k) => normalizeMedia(k) === normalizeMedia(ctype));
  if (key === undefined) key = Object.keys(content).find((k) => !k.includes(';') && mediaBase(k) === mediaBase(ctype));
  if (key === undefined) {
    errors.push(`${where}: Content-Type ${ctype} not documented (${Object.keys(content).join(', ')})`);
    return;
  }
  const media = content[key];
  if (!media.schema) return; // opaque bytes
  const schemaPointer = `${pointer}/content/${escapePointer(key)}/schema`;
  let value;
  if (isJson(key)) {
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch (e) {
      errors.push(`${where}: body is not JSON: ${e.message}`);
      return;
    }
  } else {
    value = body.toString('utf8');
  }
  const validate = validatorAt(schemaPointer);
  if (!validate(value))
    errors.push(`${where}: body does not match ${key} schema: ${ajv.errorsText(validate.errors)}; body ${body.toString('utf8').slice(0, 300)}`);
}

for (const ex of exchanges) {
  const path = ex.path.split('?')[0];
  const route = findRoute(path);
  if (!route) {
    if (ex.status !== 404) errors.push(`${ex.method} ${ex.path}: path not in the spec, but answered ${ex.status} (expected 404)`);
    else checkResponse(ex, 'unknown path', { $ref: '#/components/responses/NotFound' }, '');
    (observed['* (unknown path)'] ||= new Set()).add(ex.status);
    continue;
  }
  const item = spec.paths[route.template];
  const method = ex.method.toLowerCase();
  const op = item[method];
  if (!op) {
    const allowed = METHODS.filter((m) => item[m]).map((m) => m.toUpperCase());
    if (ex.status !== 405) {
      errors.push(`${ex.method} ${ex.path}: method not in the spec for ${route.template}, but answered ${ex.status} (expected 405)`);
    } else {
      checkResponse(ex, 'method not allowed', { $ref: '#/components/responses/MethodNotAllowed' }, '');
      const allow = (ex.headers['allow'] || '').split(',').map((s) => s.trim()).filter(Boolean).sort();
      if (JSON.stringify(allow) !== JSON.stringify([...allowed].sort()))
        errors.push(`${ex.method} ${ex.path}: Allow is "${ex.headers['allow']}", the spec documents ${allowed.join(', ')}`);
    }
    (observed[`* ${route.template} (other methods)`] ||= new Set()).add(ex.status);
    continue;
  }
  const label = `${ex.method} ${route.template}`;
  (observed[label] ||= new Set()).add(ex.status);
  const response = op.responses[String(ex.status)];
  if (!response) {
    errors.push(`${ex.method} ${ex.path}: status ${ex.status} is not documented for ${label} (documented: ${Object.keys(op.responses).join(', ')})`);
    continue;
  }
  checkResponse(ex, label, response, `/paths/${escapePointer(route.template)}/${method}/responses/${ex.status}`);
}

const out = { errors, observed: {}, documented };
for (const [k, v] of Object.entries(observed)) out.observed[k] = [...v].sort((a, b) => a - b);
console.log(JSON.stringify(out, null, 1));
