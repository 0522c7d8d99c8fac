// A small client for the chores scripts: talks to a running Herald over HTTP with the root
// token from HERALD_ROOT_TOKEN or the data dir.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const baseUrl = (process.env.HERALD_PUBLIC_URL ?? `http://${process.env.HOST ?? '127.0.0.1'}:${process.env.PORT ?? '3000'}`).replace(/\/+$/, '');

export function rootToken(): string {
  if (process.env.HERALD_ROOT_TOKEN) return process.env.HERALD_ROOT_TOKEN;
  const file = join(process.env.HERALD_DATA_DIR ?? './.herald', 'root-token');
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    throw new Error(`no root token: set HERALD_ROOT_TOKEN or start the server once so that ${file} exists`);
  }
}

export async function call<T>(token: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(baseUrl + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

export async function createWorkspaceAndKey(name: string, scopes = ['read', 'write']) {
  const root = rootToken();
  const workspace = await call<{ id: string }>(root, 'POST', '/v1/workspaces', { name });
  const key = await call<{ id: string; token: string }>(root, 'POST', `/v1/workspaces/${workspace.id}/api-keys`, { name: `${name} key`, scopes });
  return { workspaceId: workspace.id, keyId: key.id, token: key.token };
}
