// Request bodies sent compressed (Content-Encoding gzip, deflate or br): decompressed as a stream
// in preParsing, so the route's body limit applies to the decompressed bytes and a gzip bomb is
// cut at the limit (a 413) after reading at most that much, never inflated in memory whole. An
// encoding Herald does not know is a 415; a body that does not decompress is a 400.
import { PassThrough, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { HeraldError } from './errors.ts';

const DECODERS: Record<string, () => NodeJS.ReadWriteStream> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

export function requestDecoding(app: FastifyInstance): void {
  app.addHook('preParsing', async (request, _reply, payload) => {
    const header = request.headers['content-encoding'];
    if (header === undefined) return payload;
    const encoding = String(header).trim().toLowerCase();
    if (encoding === '' || encoding === 'identity') return payload;
    const decoder = DECODERS[encoding];
    if (!decoder) {
      throw new HeraldError(415, 'unsupported_media_type', 'Unsupported Media Type', `Content-Encoding ${encoding.slice(0, 40)} is not accepted (gzip, deflate, br or none)`);
    }
    // Fastify compares Content-Length with receivedEncodedLength (the bytes on the wire) and
    // its body limit with the bytes this stream gives (the decompressed ones).
    const out = Object.assign(new PassThrough(), { receivedEncodedLength: 0 });
    payload.on('data', (chunk: Buffer) => (out.receivedEncodedLength += chunk.length));
    const inflate = decoder();
    inflate.on('error', () => out.destroy(new HeraldError(400, 'bad_encoding', 'Bad Request', `The body is not valid ${encoding} data`)));
    payload.on('error', (error) => out.destroy(error));
    payload.pipe(inflate).pipe(out);
    return out as unknown as Readable & typeof payload;
  });
}
