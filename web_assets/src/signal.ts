// A value that components can watch: the smallest store that does the job.
import { useEffect, useState } from "preact/hooks";

/** Holds a value and tells subscribers when it changes. */
export class Signal<T> {
  private subscribers = new Set<(value: T) => void>();

  constructor(private current: T) {}

  get value(): T {
    return this.current;
  }

  set value(next: T) {
    if (Object.is(next, this.current)) return;
    this.current = next;
    for (const fn of [...this.subscribers]) fn(next);
  }

  /** Call `fn` on every change; returns the function that stops it. */
  subscribe(fn: (value: T) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }
}

/** The signal's current value; the component re-renders when it changes. */
export function useSignal<T>(signal: Signal<T>): T {
  const [value, setValue] = useState(signal.value);
  useEffect(() => {
    setValue(signal.value);
    return signal.subscribe(setValue);
  }, [signal]);
  return value;
}
