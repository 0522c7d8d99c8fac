import type { Clock } from '../../src/deps.ts';

/** A clock that only moves when the test says so. */
export class TestClock implements Clock {
  #now: number;
  constructor(start = '2026-06-01T10:00:00.000Z') {
    this.#now = Date.parse(start);
  }
  now(): Date {
    return new Date(this.#now);
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  set(iso: string): void {
    this.#now = Date.parse(iso);
  }
}
