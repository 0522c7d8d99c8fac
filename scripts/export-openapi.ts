// npm run openapi: writes the contract the routes produce to openapi/openapi.json.
import { writeFileSync } from 'node:fs';
import { generateOpenApi, renderGraphqlSchema, renderOpenApi } from '../src/http/contract.ts';

const path = new URL('../openapi/openapi.json', import.meta.url);
writeFileSync(path, renderOpenApi(await generateOpenApi()));
process.stdout.write(`wrote ${path.pathname}\n`);
const graphql = new URL('../openapi/schema.graphql', import.meta.url);
writeFileSync(graphql, renderGraphqlSchema());
process.stdout.write(`wrote ${graphql.pathname}\n`);
