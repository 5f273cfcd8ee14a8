// Runs a CloudFront Functions file under node, one event per line: stdin gets {"event": ...} JSON lines,
// stdout answers each with {"result": ...} or {"error": "..."} on one line.
// The file runs in a bare vm context in strict mode, as on CloudFront: no require, no module, no process.
'use strict';

const fs = require('fs');
const readline = require('readline');
const vm = require('vm');

const path = process.argv[2];
if (!path) {
    process.stderr.write('usage: node function_runner.js <function.js>\n');
    process.exit(2);
}
const context = vm.createContext({
    console: { log: (...args) => process.stderr.write(args.join(' ') + '\n') },
});
vm.runInContext('"use strict";\n' + fs.readFileSync(path, 'utf8'), context, { filename: path });
if (typeof context.handler !== 'function') {
    process.stderr.write(`${path} defines no function handler(event)\n`);
    process.exit(2);
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
    let answer;
    try {
        answer = { result: context.handler(JSON.parse(line).event) };
    } catch (error) {
        answer = { error: String(error && error.stack ? error.stack : error) };
    }
    process.stdout.write(JSON.stringify(answer) + '\n');
});
