// npm run openapi: writes the contract the routes produce to openapi/openapi.json.
import { writeFileSync } from 'node:fs';
import { generateOpenApi, renderOpenApi } from '../src/http/contract.ts';

const path = new URL('../openapi/openapi.json', import.meta.url);
writeFileSync(path, renderOpenApi(await generateOpenApi()));
process.stdout.write(`wrote ${path.pathname}\n`);
