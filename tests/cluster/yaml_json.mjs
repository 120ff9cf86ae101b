// Reads YAML (a file, or - for standard input) and prints it as JSON, for the Python tests
// that check compose/, .github/ and the Prometheus files (harness.load_yaml). It uses the
// `yaml` package of package.json (`npm ci` at the repository root), with merge keys (<<) on.
//
//   node yaml_json.mjs FILE|-
//
// Exits 1 with the parser's message when the input is not valid YAML, 2 without the package.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let YAML;
try {
  YAML = require('yaml');
} catch (e) {
  console.error('yaml_json: missing npm package yaml (' + e.message + '); run `npm ci` at the repository root');
  process.exit(2);
}
const file = process.argv[2];
const text = readFileSync(file === '-' ? 0 : file, 'utf8');
try {
  const doc = YAML.parseDocument(text, { merge: true, uniqueKeys: true });
  if (doc.errors.length) throw doc.errors[0];
  process.stdout.write(JSON.stringify(doc.toJS({ maxAliasCount: -1 })));
} catch (e) {
  console.error('yaml_json: ' + file + ': ' + e.message);
  process.exit(1);
}
