// Entry point: read the settings, start the runtime, listen, and close with grace on a signal.
import { ConfigError, loadConfig, type Config } from './config.ts';
import { startRuntime, type Runtime } from './runtime/runtime.ts';

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`herald: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}

const say = (m: string) => process.stdout.write(`${m}\n`);
let runtime: Runtime;
try {
  runtime = await startRuntime(config, { log: { info: say, warn: (m) => process.stderr.write(`${m}\n`), debug: () => {} } });
} catch (error) {
  process.stderr.write(`herald: could not start: ${(error as Error).message}\n`);
  process.exit(1);
}

const { app } = runtime;
await app.listen({ port: config.port, host: config.host });
const base = config.publicUrl;
say(`Herald ${config.role === 'worker' ? 'worker' : 'API'} listening on ${base} (role ${config.role}, ${runtime.embedded ? 'embedded PostgreSQL' : 'DATABASE_URL'})`);
if (config.role !== 'worker') {
  say(`  REST API   ${base}/v1`);
  say(`  API docs   ${base}/docs   (OpenAPI: ${base}/openapi.json)`);
  if (config.env !== 'production') say(`  GraphiQL   ${base}/graphiql`);
}
if (runtime.rootTokenIsNew) {
  say(`  Root token (shown this once; kept in ${config.dataDir}/root-token):`);
  say(`    ${runtime.rootToken}`);
}

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) {
      process.stderr.write('herald: second signal, exiting now\n');
      process.exit(1);
    }
    stopping = true;
    app.log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      process.stderr.write('herald: shutdown took too long, exiting\n');
      process.exit(1);
    }, 30_000);
    force.unref();
    runtime.close().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`herald: error while shutting down: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  });
}
