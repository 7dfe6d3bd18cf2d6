/**
 * A test certificate authority generated at test time (EC P-256, @peculiar/x509 + node webcrypto).
 *
 * `getTestCa()` returns one CA per process (generation costs tens of milliseconds); leaves are
 * cached per (kind, names). Pass `ca.certPem` to the fetcher's `ca` option so Node trusts it.
 */
import 'reflect-metadata'; // @peculiar/x509 v2 (tsyringe) needs the polyfill before it loads
import { KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as never);

/** A certificate and its private key, PEM, each ending in a newline (safe to concatenate). */
export interface TestCert {
  readonly certPem: string;
  readonly keyPem: string;
  /** Leaf first, then the issuing CA when there is one (what a server sends). */
  readonly chainPem: string;
}

/** Kinds of server certificate the HTTPS fixture can present. */
export type CertKind =
  | 'good' // issued by the test CA for the name
  | 'expired' // issued by the test CA, validity ended yesterday
  | 'not-yet-valid' // issued by the test CA, valid from tomorrow
  | 'self-signed' // a leaf signing itself
  | 'untrusted' // issued by another CA that nobody trusts (leaf + that CA sent)
  | 'wrong-name'; // issued by the test CA for another name

/** The CA and a certificate factory. */
export interface TestCa {
  /** The CA certificate, PEM with a trailing newline. Trust this in clients. */
  readonly certPem: string;
  /** A leaf for `names` (DNS SANs) of the given kind; cached. */
  leaf(names: readonly string[], kind?: CertKind): Promise<TestCert>;
}

type Keys = webcrypto.CryptoKeyPair;
type CryptoKey = webcrypto.CryptoKey;

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY = 24 * 3600 * 1000;

function pem(cert: x509.X509Certificate): string {
  return `${cert.toString('pem')}\n`;
}

async function keyPem(key: CryptoKey): Promise<string> {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

async function newKeys(): Promise<Keys> {
  return (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as Keys;
}

interface Issuer {
  readonly cert: x509.X509Certificate;
  readonly keys: Keys;
  readonly certPem: string;
}

async function makeCa(commonName: string): Promise<Issuer> {
  const keys = await newKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: SIGN,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 3650 * DAY),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, certPem: pem(cert) };
}

async function makeLeaf(
  names: readonly string[],
  issuer: Issuer | null,
  notBefore: Date,
  notAfter: Date,
): Promise<TestCert> {
  const keys = await newKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value }))),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  const subject = `CN=${names[0] ?? 'leaf.test'}`;
  let cert: x509.X509Certificate;
  if (issuer === null) {
    cert = await x509.X509CertificateGenerator.createSelfSigned({
      name: subject,
      keys,
      signingAlgorithm: SIGN,
      notBefore,
      notAfter,
      extensions,
    });
  } else {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.keys.publicKey));
    cert = await x509.X509CertificateGenerator.create({
      subject,
      issuer: issuer.cert.subject,
      publicKey: keys.publicKey,
      signingKey: issuer.keys.privateKey,
      signingAlgorithm: SIGN,
      notBefore,
      notAfter,
      extensions,
    });
  }
  const certPem = pem(cert);
  return {
    certPem,
    keyPem: await keyPem(keys.privateKey),
    chainPem: issuer === null ? certPem : certPem + issuer.certPem,
  };
}

function createTestCa(trusted: Issuer, untrusted: () => Promise<Issuer>): TestCa {
  const cache = new Map<string, Promise<TestCert>>();
  return {
    certPem: trusted.certPem,
    leaf(names, kind = 'good') {
      const key = `${kind} ${names.join(',')}`;
      let hit = cache.get(key);
      if (hit === undefined) {
        const now = Date.now();
        const valid = [new Date(now - DAY), new Date(now + 30 * DAY)] as const;
        switch (kind) {
          case 'good':
            hit = makeLeaf(names, trusted, ...valid);
            break;
          case 'expired':
            hit = makeLeaf(names, trusted, new Date(now - 30 * DAY), new Date(now - DAY));
            break;
          case 'not-yet-valid':
            hit = makeLeaf(names, trusted, new Date(now + DAY), new Date(now + 30 * DAY));
            break;
          case 'self-signed':
            hit = makeLeaf(names, null, ...valid);
            break;
          case 'untrusted':
            hit = untrusted().then((other) => makeLeaf(names, other, ...valid));
            break;
          case 'wrong-name':
            hit = makeLeaf(['wrong-name.invalid.test'], trusted, ...valid);
            break;
        }
        cache.set(key, hit);
      }
      return hit;
    },
  };
}

let shared: Promise<TestCa> | undefined;

/** The process-wide test CA (created on first use). */
export function getTestCa(): Promise<TestCa> {
  shared ??= (async () => {
    let other: Promise<Issuer> | undefined;
    const trusted = await makeCa('mtastsdb test CA');
    return createTestCa(trusted, () => (other ??= makeCa('mtastsdb untrusted CA')));
  })();
  return shared;
}
