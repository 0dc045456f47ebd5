/** Jest: @swc/jest transpiles TypeScript (type checking is `tsc`, run by the set-up step). */
const swc = ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } }];
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.(ts|js|mjs)$': swc },
  // otplib's base32 and HMAC plugins ship as ES modules only; Node 20 loads them through
  // require(esm), but Jest's module loader does not, so they are transpiled like our code.
  transformIgnorePatterns: ['/node_modules/(?!(@scure|@noble|@otplib)/)'],
  testTimeout: 30000,
  globalSetup: '<rootDir>/test/logSetup.js',
  globalTeardown: '<rootDir>/test/logScan.js',
  maxWorkers: 2,
};
