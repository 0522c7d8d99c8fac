export * from './workspaces.ts';
export * from './customers.ts';
export * from './events.ts';
export * from './imports.ts';
export * from './messaging.ts';
export * from './audiences.ts';
export * from './actions.ts';
export * from './flows.ts';
