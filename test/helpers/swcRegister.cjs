// Lets a child process run the server from src/*.ts as it is in the work tree (not a dist/ that
// may be stale): `node -r ./test/helpers/swcRegister.cjs src/main.ts`. Transpiles each .ts file
// with @swc/core as jest does (jest.config.js); type checking stays with tsc.
'use strict';
const fs = require('node:fs');
const swc = require('@swc/core');

require.extensions['.ts'] = function compileTs(module, filename) {
  const source = fs.readFileSync(filename, 'utf8');
  const { code } = swc.transformSync(source, {
    filename,
    jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  });
  module._compile(code, filename);
};
