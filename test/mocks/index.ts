// All provider mocks in one import: `import { startSendGridMock, ... } from './mocks/index.ts'`.
export * from './server.ts';
export * from './sendgrid.ts';
export * from './sms.ts';
export * from './webpush.ts';
export * from './fcm.ts';
export * from './webhook-receiver.ts';
export { MOCK_TLS } from './tls.ts';
