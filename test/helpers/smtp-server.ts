/**
 * A small SMTP sink for delivery tests: EHLO/HELO, STARTTLS (a `tls.TLSSocket` upgrade of the same
 * connection), MAIL, RCPT, DATA, RSET, NOOP, QUIT. It accepts every message and keeps it.
 *
 * Whether STARTTLS is offered, and with which certificate, is per sink and can change between
 * connections (`setTls`), so one MX can first present a good certificate and later a bad one.
 */
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';

/** The certificate chain and key a sink presents after STARTTLS. */
export interface SmtpTls {
  readonly chainPem: string;
  readonly keyPem: string;
}

/** A message the sink accepted. */
export interface ReceivedMessage {
  readonly from: string;
  readonly to: readonly string[];
  readonly data: string;
  /** Whether the message came over TLS. */
  readonly tls: boolean;
}

/** The running sink. */
export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  /** Offers STARTTLS with `cred` from the next connection on, or no STARTTLS with `null`. */
  setTls(cred: SmtpTls | null): void;
  readonly messages: readonly ReceivedMessage[];
  /** TLS handshakes that completed. */
  handshakes(): number;
  close(): Promise<void>;
}

const MAX_LINE_BYTES = 4096;

/** The address in `MAIL FROM:<a@b> …` or `RCPT TO:<a@b> …` (RFC 5321 §4.1.1.2–3), brackets dropped. */
function pathOf(line: string): string {
  return /^\S+\s+\S+?:\s*<([^>]*)>/.exec(line)?.[1] ?? '';
}
const MAX_MESSAGE_BYTES = 1024 * 1024;

/** Starts a sink on `host` (port 25 unless given) greeting as `hostname`. */
export async function startSmtpSink(options: {
  host: string;
  port?: number;
  hostname: string;
  tls: SmtpTls | null;
}): Promise<SmtpSink> {
  let context =
    options.tls === null ? null : tls.createSecureContext({ cert: options.tls.chainPem, key: options.tls.keyPem });
  const messages: ReceivedMessage[] = [];
  const sockets = new Set<net.Socket>();
  let handshakes = 0;

  function session(plain: net.Socket): void {
    sockets.add(plain);
    plain.on('close', () => sockets.delete(plain));
    plain.on('error', () => {});
    const offered = context;
    let stream: net.Socket = plain;
    let secure = false;
    let buf = '';
    let from = '';
    let to: string[] = [];
    let data: string[] | null = null;
    let dataBytes = 0;
    const reply = (text: string): void => {
      if (!stream.destroyed) stream.write(`${text}\r\n`);
    };

    const onData = (chunk: Buffer): void => {
      buf += chunk.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (line.length > MAX_LINE_BYTES) {
          reply('500 line too long');
          stream.destroy();
          return;
        }
        if (data !== null) {
          if (line === '.') {
            messages.push({ from, to, data: data.join('\r\n'), tls: secure });
            data = null;
            from = '';
            to = [];
            reply('250 2.0.0 queued');
          } else {
            dataBytes += line.length + 2;
            if (dataBytes > MAX_MESSAGE_BYTES) {
              reply('552 5.3.4 message too big');
              stream.destroy();
              return;
            }
            data.push(line.startsWith('.') ? line.slice(1) : line);
          }
          continue;
        }
        const verb = line.split(' ', 1)[0]?.toUpperCase() ?? '';
        switch (verb) {
          case 'EHLO':
            reply(`250-${options.hostname}`);
            if (offered !== null && !secure) reply('250-STARTTLS');
            reply('250 8BITMIME');
            break;
          case 'HELO':
            reply(`250 ${options.hostname}`);
            break;
          case 'STARTTLS': {
            if (offered === null || secure) {
              reply('502 5.5.1 not offered');
              break;
            }
            reply('220 2.0.0 ready to start TLS');
            // RFC 3207 §4.2: whatever the client sent after STARTTLS before the handshake is discarded.
            buf = '';
            plain.removeListener('data', onData);
            const upgraded = new tls.TLSSocket(plain, { isServer: true, secureContext: offered });
            upgraded.on('error', () => plain.destroy());
            upgraded.on('secure', () => {
              handshakes++;
              secure = true;
              stream = upgraded;
            });
            upgraded.on('data', onData);
            return;
          }
          case 'MAIL':
            from = pathOf(line);
            reply('250 2.1.0 ok');
            break;
          case 'RCPT':
            to.push(pathOf(line));
            reply('250 2.1.5 ok');
            break;
          case 'DATA':
            data = [];
            dataBytes = 0;
            reply('354 end with .');
            break;
          case 'RSET':
            from = '';
            to = [];
            reply('250 2.0.0 ok');
            break;
          case 'NOOP':
            reply('250 2.0.0 ok');
            break;
          case 'QUIT':
            reply('221 2.0.0 bye');
            stream.end();
            return;
          default:
            reply('502 5.5.2 command not recognised');
        }
      }
    };
    plain.on('data', onData);
    reply(`220 ${options.hostname} ESMTP sink`);
  }

  const server = net.createServer(session);
  server.listen(options.port ?? 25, options.host);
  await once(server, 'listening');
  return {
    host: options.host,
    port: (server.address() as net.AddressInfo).port,
    messages,
    setTls(cred) {
      context = cred === null ? null : tls.createSecureContext({ cert: cred.chainPem, key: cred.keyPem });
    },
    handshakes: () => handshakes,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
