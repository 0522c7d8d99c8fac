export * from './workspaces.ts';
export * from './customers.ts';
export * from './events.ts';
export * from './imports.ts';
export * from './messaging.ts';
