// Outgoing HTTP through node:http clients (the web-push library): keep-alive agents whose DNS
// lookup is the SSRF guard, and a trace per send that tells whether the request left (its socket
// was connected, TLS done) or failed before any byte could reach the provider; see http.ts.
import { AsyncLocalStorage } from 'node:async_hooks';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { abortText, classifyNetworkError, errorText, flatHeaders, POOL, type Failure } from './http.ts';
import { guardedLookup, SSRF_REFUSED } from './ssrf.ts';

/**
 * What one send learned about the node:http request a library made on its behalf. Carried with
 * AsyncLocalStorage from the provider's send() to the agent that sees the ClientRequest.
 */
export interface NodeTrace {
  readonly signal: AbortSignal;
  readonly allowPrivate: boolean;
  /** The host the request must go to (the one checked); anything else is refused. */
  readonly hostname: string;
  /** Requests the library made (0: it failed before making one). */
  requests: number;
  /** A request's socket was connected (TCP, and TLS for https): the request may have left. */
  connected: boolean;
  /** Status and headers, when an answer arrived (even if the library then failed on it). */
  response: { status: number; headers: Record<string, string> } | null;
}

const traces = new AsyncLocalStorage<NodeTrace>();

export function newTrace(signal: AbortSignal, allowPrivate: boolean, hostname: string): NodeTrace {
  return { signal, allowPrivate, hostname: hostname.replace(/^\[|\]$/g, ''), requests: 0, connected: false, response: null };
}

/** Runs a library call with the trace its node:http requests report to. */
export function traced<T>(trace: NodeTrace, fn: () => Promise<T>): Promise<T> {
  return traces.run(trace, fn);
}

export function currentTrace(): NodeTrace | undefined {
  return traces.getStore();
}

function established(socket: Socket): boolean {
  if (socket.connecting) return false;
  if (socket instanceof TLSSocket) {
    const protocol = socket.getProtocol();
    return protocol !== null && protocol !== 'unknown';
  }
  return true;
}

/**
 * Attaches a ClientRequest to the current trace: records when its socket is connected and the
 * answer's status, and destroys it when the trace's signal fires. Returns false (and destroys the
 * request, before it has a socket) when it must not be sent: signal already fired, or wrong host.
 */
function traceClientRequest(req: http.ClientRequest, host: string | undefined): boolean {
  const trace = traces.getStore();
  if (!trace) return true;
  trace.requests++;
  if (trace.signal.aborted) {
    req.destroy(new Error(`${abortText(trace.signal)} before the request was sent`));
    return false;
  }
  if (host !== undefined && host.replace(/^\[|\]$/g, '') !== trace.hostname) {
    const error: NodeJS.ErrnoException = new Error(`refusing ${host}: the request was not for the checked host ${trace.hostname}`);
    error.code = SSRF_REFUSED;
    req.destroy(error);
    return false;
  }
  const onAbort = () => req.destroy(new Error(abortText(trace.signal)));
  trace.signal.addEventListener('abort', onAbort, { once: true });
  req.once('close', () => trace.signal.removeEventListener('abort', onAbort));
  req.once('socket', (socket: Socket) => {
    const mark = () => void (trace.connected = true);
    if (established(socket)) mark();
    else socket.once(socket instanceof TLSSocket ? 'secureConnect' : 'connect', mark);
  });
  req.once('response', (res: http.IncomingMessage) => {
    trace.response = { status: res.statusCode ?? 0, headers: flatHeaders(res.headers) };
  });
  return true;
}

type AddRequest = (req: http.ClientRequest, options: http.RequestOptions) => void;

/** A keep-alive agent whose requests report to the current trace (and are refused when they must not go). */
function tracingAgent<A extends http.Agent>(agent: A): A {
  const self = agent as unknown as { addRequest: AddRequest };
  const addRequest = self.addRequest.bind(agent);
  self.addRequest = (req, options) => {
    if (traceClientRequest(req, options.hostname ?? options.host ?? undefined)) addRequest(req, options);
  };
  return agent;
}

export interface NodeAgents {
  http: { strict: http.Agent; permissive: http.Agent };
  https: { strict: https.Agent; permissive: https.Agent };
}

/**
 * Keep-alive node:http(s) agents for a library client, strict ones using the SSRF guard as their
 * lookup. `ca` replaces the trusted CAs (tests: the mocks' self-signed certificate).
 */
export function createNodeAgents(options: { ca?: string | Buffer } = {}): NodeAgents {
  // timeout: idle keep-alive sockets are closed after it (a server's shorter Keep-Alive hint wins).
  const base = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: POOL.connections, maxFreeSockets: 16, scheduling: 'lifo' as const, timeout: POOL.keepAliveTimeout };
  const tls = options.ca !== undefined ? { ca: options.ca } : {};
  return {
    http: { strict: tracingAgent(new http.Agent({ ...base, lookup: guardedLookup })), permissive: tracingAgent(new http.Agent(base)) },
    https: { strict: tracingAgent(new https.Agent({ ...base, ...tls, lookup: guardedLookup })), permissive: tracingAgent(new https.Agent({ ...base, ...tls })) },
  };
}

export function destroyNodeAgents(agents: NodeAgents): void {
  for (const agent of [agents.http.strict, agents.http.permissive, agents.https.strict, agents.https.permissive]) agent.destroy();
}

/**
 * The outcome of a library call that failed without an HTTP status: local error (no request made,
 * not a deadline: `rejected`), or a network failure judged by whether the socket was connected.
 */
export function traceFailure(trace: NodeTrace, error: unknown): Failure {
  if (trace.requests === 0 && !trace.signal.aborted) {
    return { kind: 'rejected', reason: `the request could not be built: ${errorText(error)}` };
  }
  if (trace.signal.aborted) {
    return trace.connected
      ? { kind: 'unknown', reason: `${abortText(trace.signal)} waiting for the answer, after the request was sent: it may or may not have been accepted` }
      : { kind: 'retry', reason: `${abortText(trace.signal)} before the request was sent (connecting)` };
  }
  return classifyNetworkError(error, trace.connected);
}
