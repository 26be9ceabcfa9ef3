export * from './broker-api.js';
export * from './dispatch.js';
export * from './error-header.js';
export * from './frame.js';
export * from './messages.js';
export * from './opcodes.js';
export * from './session.js';
export * from './types.js';
