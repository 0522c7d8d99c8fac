// The providers Herald ships, by the name channel configs use.
import { sandboxProvider } from './sandbox.ts';
import type { Provider } from './types.ts';

export function defaultProviders(): Record<string, Provider> {
  return { sandbox: sandboxProvider };
}
