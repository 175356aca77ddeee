// Compile a solc standard-JSON input (read from stdin) with the pinned solcjs and write the
// standard-JSON output to stdout. Imports that the input does not carry (OpenZeppelin) are
// read from this folder's node_modules, so compiling needs no network.
//
// Usage: node tools/compile.mjs < input.json > output.json
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");
const nodeModules = join(dirname(fileURLToPath(import.meta.url)), "..", "node_modules");

function findImports(path) {
  const resolved = normalize(join(nodeModules, path));
  if (!resolved.startsWith(nodeModules + "/")) {
    return { error: `import ${path} escapes node_modules` };
  }
  try {
    return { contents: readFileSync(resolved, "utf8") };
  } catch (err) {
    return { error: `import ${path} not found under ${nodeModules} (run npm ci): ${err.message}` };
  }
}

const input = readFileSync(0, "utf8");
process.stdout.write(solc.compile(input, { import: findImports }));
process.stderr.write(`solc ${solc.version()}\n`);
