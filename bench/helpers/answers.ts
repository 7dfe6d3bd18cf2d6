// Comparing socketmap answers of two daemons. mtastsdb keeps the policy's order of `mx` patterns in
// `match=`; postfix-mta-sts-resolver builds the list from a Python set, so its order varies. Postfix
// tries every pattern of `match=` (smtp_tls_policy_maps), so the order does not change the policy.

/** How two answers relate: equal, equal once `match=` is read as a set, or different. */
export type AnswerRelation = 'same' | 'same-set' | 'different';

/** `match=` patterns as a sorted set, and the rest of the answer with `match=` left out. */
function split(answer: string): { rest: string; match: string } {
  const words = answer.split(' ');
  const i = words.findIndex((w) => w.startsWith('match='));
  if (i < 0) return { rest: answer, match: '' };
  const match = [...new Set((words[i] as string).slice('match='.length).split(':'))].sort().join(':');
  return { rest: [...words.slice(0, i), ...words.slice(i + 1)].join(' '), match };
}

/** Relates answer `a` to answer `b`. */
export function relateAnswers(a: string, b: string): AnswerRelation {
  if (a === b) return 'same';
  const x = split(a);
  const y = split(b);
  return x.rest === y.rest && x.match === y.match ? 'same-set' : 'different';
}
