/**
 * Child process of test/server/sessions.test.ts: a Spillway client holding one WebSocket connection
 * until it is killed. argv: broker URL, client id, opcode of a server request it takes and never
 * answers. Prints `ready <sessionId>` once connected. Run from dist/ (compiled by tsc).
 */
import { Spillway } from '../../src/client/index.js';

const [url, clientId, silentOpcode] = process.argv.slice(2);
const client = await Spillway.connect(url!, { clientId: clientId! });
client.onServerRequest(Number(silentOpcode), () => new Promise(() => undefined));
process.stdout.write(`ready ${client.broker.sessionId}\n`);
// Held open until SIGKILL; the test stops it by its PID.
setInterval(() => undefined, 1 << 30);
