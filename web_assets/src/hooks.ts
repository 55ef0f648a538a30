// Loading data for a page: state, error, and a reload that pages call when
// live events say the data changed.
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { describe } from "./actions";
import { ApiError } from "./api";

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  /** HTTP status of the last failure (0: unreachable), or null. */
  status: number | null;
  loading: boolean;
  reload: () => void;
}

/**
 * Run `load` now and whenever `deps` change; `reload()` runs it again.
 * An answer is shown unless a newer call's answer is already shown, so a slow
 * response never overwrites a fresher one, and a reload while the first call
 * is under way (the event stream's greeting asks for one) does not hold back
 * that first answer. Errors are shown only from the latest call.
 */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<Omit<Loaded<T>, "reload">>({
    data: undefined,
    error: null,
    status: null,
    loading: true,
  });
  // Calls started, and the newest call whose outcome is on screen.
  const generation = useRef(0);
  const shown = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const run = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    loadRef.current().then(
      (data) => {
        if (mine <= shown.current) return;
        shown.current = mine;
        setState({ data, error: null, status: null, loading: mine !== generation.current });
      },
      (err) => {
        if (mine !== generation.current) return;
        shown.current = mine;
        const status = err instanceof ApiError ? err.status : null;
        setState((s) => ({ ...s, error: describe(err), status, loading: false }));
      },
    );
  }, []);
  // A layout effect starts the request right after the first render rather
  // than after the first paint: the answer arrives a frame or more sooner.
  useLayoutEffect(() => {
    // Answers to calls made for the previous deps are not for this page.
    shown.current = generation.current;
    setState({ data: undefined, error: null, status: null, loading: true });
    run();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return { ...state, reload: run };
}

/**
 * A function that calls `fn` at most once per `ms`: the first call runs at
 * once, calls during the pause run once at its end. Live events can come by
 * the thousand per second; pages refetch at most this often.
 */
export function useThrottle(fn: () => void, ms: number): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const last = useRef(0);
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current !== undefined) return;
    const wait = last.current + ms - Date.now();
    if (wait <= 0) {
      last.current = Date.now();
      fnRef.current();
      return;
    }
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      last.current = Date.now();
      fnRef.current();
    }, wait);
  }, [ms]);
}

/** The current time, updated every `ms` (for "3 s ago" texts). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(t);
  }, [ms]);
  return now;
}

/** Call `fn` every `ms` while mounted. */
export function useInterval(fn: () => void, ms: number): void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    const t = window.setInterval(() => fnRef.current(), ms);
    return () => window.clearInterval(t);
  }, [ms]);
}
