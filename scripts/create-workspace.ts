// npm run create-workspace -- --name "Acme": a workspace and an API key on the running server.
import { arg, baseUrl, createWorkspaceAndKey } from './lib/client.ts';

const name = arg('name', 'My workspace');
const scopes = arg('scopes', 'read,write').split(',');
const { workspaceId, token } = await createWorkspaceAndKey(name, scopes);
process.stdout.write(`workspace ${workspaceId} on ${baseUrl}\n`);
process.stdout.write(`API key (shown once): ${token}\n`);
process.stdout.write(`export HERALD_KEY=${token}\n`);
