// Validate a GLB with the Khronos glTF-Validator: prints its JSON report, exits 1 on errors.
// Usage: node tests/gltf_validate.mjs model.glb   (needs `npm ci`: node_modules/gltf-validator)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator"); // a CommonJS package

const path = process.argv[2];
if (!path) {
  console.error("usage: node tests/gltf_validate.mjs MODEL.glb");
  process.exit(2);
}
let bytes;
try {
  bytes = new Uint8Array(readFileSync(path));
} catch (error) {
  console.error(`cannot read ${path}: ${error.message}`);
  process.exit(2);
}
try {
  const report = await validator.validateBytes(bytes, { uri: path, maxIssues: 100 });
  console.log(JSON.stringify(report, null, 1));
  process.exit(report.issues.numErrors > 0 ? 1 : 0);
} catch (error) {
  console.error(`the validator failed on ${path}: ${error}`);
  process.exit(2);
}
