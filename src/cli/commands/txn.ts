/**
 * `spillway txn list`: the open (and committing) transactions of the broker, one JSON document:
 * `{ "transactions": [{ id, group, state, ageMs, checks, maxChecks, messages, ... }], "stats": {...} }`
 * (the same figures as `/metrics` and `GET /v1/transactions`).
 */
import { runReportCommand } from './report-command.js';

export const txnUsage = `usage: spillway txn list [--broker URL] [--token T] [--ca-file PEM]
  open transactions: id, producer group, state, age, check-backs made, messages held`;

export function runTxn(argv: string[]): Promise<number> {
  return runReportCommand(argv, 'txn', 'list', (sw) => sw.admin.listTransactions());
}
