// Tracking tokens without a database: what signs them, what verifies them, what a tampered one gets.
import t from 'tap';
import { randomUUID } from 'node:crypto';
import { messageSigner, signToken, TokenKind, verifyToken } from '../src/modules/tracking/tokens.ts';

const secret = 'a-test-secret-of-at-least-32-characters';
const workspaceId = randomUUID();
const messageId = randomUUID();

t.test('a message\'s signer makes the tokens signToken makes, and they verify', async (t) => {
  const sign = messageSigner(secret, workspaceId, messageId);
  for (const kind of Object.keys(TokenKind) as Array<keyof typeof TokenKind>) {
    for (const link of [0, 1, 7, 65535]) {
      const token = sign(kind, link);
      t.equal(token, signToken(secret, { workspaceId, messageId, kind, link }), `${kind} ${link}`);
      t.same(verifyToken(secret, token, kind), { workspaceId, messageId, kind, link });
    }
  }
  t.not(sign('click', 1), sign('click', 2), 'each link its own token');
  t.not(messageSigner(secret, workspaceId, randomUUID())('click', 1), sign('click', 1), 'each message its own tokens');
  t.equal(verifyToken('another-secret-of-at-least-32-characters', sign('open'), 'open'), null, 'another secret: not genuine');
  t.equal(verifyToken(secret, sign('click', 3), 'unsubscribe'), null, 'a click token does not unsubscribe');
});

t.test('a token changed in any one byte, cut or lengthened is refused', async (t) => {
  const token = messageSigner(secret, workspaceId, messageId)('click', 2);
  const raw = Buffer.from(token, 'base64url');
  let refused = 0;
  for (let i = 0; i < raw.length; i++) {
    for (const bit of [0x01, 0x80]) {
      const changed = Buffer.from(raw);
      changed[i]! ^= bit;
      if (verifyToken(secret, changed.toString('base64url')) === null) refused++;
    }
  }
  t.equal(refused, raw.length * 2, 'every flipped bit, in the ids, the kind, the link index and the tag');
  t.equal(verifyToken(secret, token.slice(0, -1)), null);
  t.equal(verifyToken(secret, `${token}A`), null);
});
