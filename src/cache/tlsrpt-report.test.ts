import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MtaStsError, type ErrorDetails } from '../errors.js';
import { parseDomain } from '../rfc8461/domain.js';
import { parsePolicy } from '../rfc8461/policy.js';
import {
  BACKOFF_REASON,
  backoffDetails,
  failureDetails,
  failureReason,
  failureResultType,
  noPolicyResult,
  policyResult,
  stsFailureResult,
} from './tlsrpt-report.js';

const err = (
  code: ConstructorParameters<typeof MtaStsError>[0],
  details: ErrorDetails = {},
  cause?: unknown,
): MtaStsError => new MtaStsError(code, 'x', { details, ...(cause !== undefined ? { cause } : {}) });
const coded = (code: string): Error => Object.assign(new Error(code), { code });

const CASES: Array<{ name: string; error: unknown; type: string; reason: string }> = [
  {
    name: 'no record',
    error: err('ERR_MTASTS_NO_RECORD', {}, coded('ENOTFOUND')),
    type: 'sts-policy-fetch-error',
    reason: 'no-mta-sts-dns-txt-record',
  },
  {
    name: 'multiple records',
    error: err('ERR_MTASTS_MULTIPLE_RECORDS', { count: 2 }),
    type: 'sts-policy-fetch-error',
    reason: 'multiple-mta-sts-records',
  },
  {
    name: 'record syntax',
    error: err('ERR_MTASTS_RECORD_SYNTAX'),
    type: 'sts-policy-fetch-error',
    reason: 'malformed-mta-sts-dns-txt-record',
  },
  {
    name: 'DNS with code',
    error: err('ERR_MTASTS_DNS', { dnsCode: 'ESERVFAIL' }),
    type: 'sts-policy-fetch-error',
    reason: 'dns-error+ESERVFAIL',
  },
  {
    name: 'DNS, code in cause',
    error: err('ERR_MTASTS_DNS', {}, coded('ETIMEOUT')),
    type: 'sts-policy-fetch-error',
    reason: 'dns-error+ETIMEOUT',
  },
  {
    name: 'HTTP 500',
    error: err('ERR_MTASTS_POLICY_FETCH', { httpStatus: 500 }),
    type: 'sts-policy-fetch-error',
    reason: 'policy-fetch-error+http-500',
  },
  {
    name: 'HTTP 404',
    error: err('ERR_MTASTS_NO_POLICY', { httpStatus: 404 }),
    type: 'sts-policy-fetch-error',
    reason: 'no-policy+http-404',
  },
  {
    name: 'fetch timeout',
    error: err('ERR_MTASTS_POLICY_FETCH', { timeout: true }),
    type: 'sts-policy-fetch-error',
    reason: 'policy-fetch-error+timeout',
  },
  {
    name: 'private address',
    error: err('ERR_MTASTS_POLICY_FETCH', { refused: true }),
    type: 'sts-policy-fetch-error',
    reason: 'policy-fetch-error+non-public-address',
  },
  {
    name: 'connection refused',
    error: err('ERR_MTASTS_POLICY_FETCH', { errorCode: 'ECONNREFUSED' }),
    type: 'sts-policy-fetch-error',
    reason: 'policy-fetch-error+ECONNREFUSED',
  },
  {
    name: 'bare fetch error',
    error: err('ERR_MTASTS_POLICY_FETCH'),
    type: 'sts-policy-fetch-error',
    reason: 'policy-fetch-error',
  },
  {
    name: 'policy syntax',
    error: err('ERR_MTASTS_POLICY_SYNTAX'),
    type: 'sts-policy-invalid',
    reason: 'malformed-policy',
  },
  {
    name: 'expired',
    error: err('ERR_MTASTS_POLICY_FETCH', { webpki: true, tlsCode: 'CERT_HAS_EXPIRED' }),
    type: 'sts-webpki-invalid',
    reason: 'certificate-expired',
  },
  {
    name: 'wrong name',
    error: err('ERR_MTASTS_POLICY_FETCH', { webpki: true, tlsCode: 'ERR_TLS_CERT_ALTNAME_INVALID' }),
    type: 'sts-webpki-invalid',
    reason: 'certificate-host-mismatch',
  },
  {
    name: 'self-signed',
    error: err('ERR_MTASTS_POLICY_FETCH', { webpki: true, tlsCode: 'DEPTH_ZERO_SELF_SIGNED_CERT' }),
    type: 'sts-webpki-invalid',
    reason: 'certificate-not-trusted',
  },
  {
    name: 'untrusted chain',
    error: err('ERR_MTASTS_POLICY_FETCH', { webpki: true }, coded('SELF_SIGNED_CERT_IN_CHAIN')),
    type: 'sts-webpki-invalid',
    reason: 'certificate-not-trusted',
  },
  {
    name: 'not yet valid',
    error: err('ERR_MTASTS_POLICY_FETCH', { webpki: true, tlsCode: 'CERT_NOT_YET_VALID' }),
    type: 'sts-webpki-invalid',
    reason: 'validation-failure+CERT_NOT_YET_VALID',
  },
  {
    name: 'webpki without code',
    error: err('ERR_MTASTS_POLICY_FETCH', { webpki: true }),
    type: 'sts-webpki-invalid',
    reason: 'validation-failure',
  },
  { name: 'aborted', error: err('ERR_MTASTS_ABORTED'), type: 'sts-policy-fetch-error', reason: 'timeout' },
  { name: 'not ours', error: new Error('bug'), type: 'sts-policy-fetch-error', reason: 'internal-error' },
];

for (const c of CASES) {
  test(`failure details: ${c.name}`, () => {
    assert.equal(failureResultType(c.error), c.type);
    assert.equal(failureReason(c.error), c.reason);
    assert.deepEqual(failureDetails(c.error), { resultType: c.type, failureReasonCode: c.reason });
    assert.deepEqual(failureDetails(c.error, true), {
      resultType: c.type,
      failureReasonCode: `${c.reason}+fallback-to-cached-policy`,
    });
  });
}

const d = parseDomain('bücher.example.test');
const TEXT = 'version: STSv1\r\nmode: enforce\r\n\r\nmx: mx1.example.test\nmx: *.mx.example.test\r\nmax_age: 86400\r\n';

test('policyResult: type sts, the lines as served (blank ones dropped), mx patterns as written, A-label domain', () => {
  const p = parsePolicy(TEXT);
  assert.deepEqual(policyResult(d, p, TEXT), {
    policy: {
      type: 'sts',
      string: ['version: STSv1', 'mode: enforce', 'mx: mx1.example.test', 'mx: *.mx.example.test', 'max_age: 86400'],
      domain: 'xn--bcher-kva.example.test',
      mxHost: ['mx1.example.test', '*.mx.example.test'],
    },
    failureDetails: [],
  });
});

test('policyResult: an unknown text is reconstructed; failure details are carried', () => {
  const p = parsePolicy(TEXT);
  const fd = failureDetails(err('ERR_MTASTS_DNS', { dnsCode: 'ESERVFAIL' }), true);
  const r = policyResult(d, p, '', [fd]);
  assert.deepEqual(r.policy.string, [
    'version: STSv1',
    'mode: enforce',
    'mx: mx1.example.test',
    'mx: *.mx.example.test',
    'max_age: 86400',
  ]);
  assert.deepEqual(r.failureDetails, [fd]);
});

test('policyResult: mode none is no-policy-found', () => {
  const p = parsePolicy('version: STSv1\nmode: none\nmax_age: 86400\n');
  assert.deepEqual(policyResult(d, p, 'version: STSv1\nmode: none\nmax_age: 86400\n'), noPolicyResult(d));
  assert.deepEqual(noPolicyResult(d).policy, {
    type: 'no-policy-found',
    string: [],
    domain: 'xn--bcher-kva.example.test',
    mxHost: [],
  });
});

test('back-off and failed discovery: type sts without policy strings', () => {
  assert.deepEqual(stsFailureResult(d, [backoffDetails()]), {
    policy: { type: 'sts', string: [], domain: 'xn--bcher-kva.example.test', mxHost: [] },
    failureDetails: [{ resultType: 'sts-policy-fetch-error', failureReasonCode: BACKOFF_REASON }],
  });
  assert.equal(BACKOFF_REASON, 'back-off-after-recent-fetch-error');
});
