// Small hooks the administration components share.
import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';

/** False once the component is unmounted (the page was left): late answers then change nothing. */
export function useAlive(): { readonly current: boolean } {
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);
  return alive;
}

/**
 * Moves focus after the next render of this component: the target may be hidden or not exist
 * until then (a form being shown, a panel being opened). The last request before a render wins.
 */
export function useFocusAfterRender(): (target: () => HTMLElement | null | undefined) => void {
  const pending = useRef<(() => HTMLElement | null | undefined) | null>(null);
  useLayoutEffect(() => {
    const target = pending.current;
    if (!target) return;
    pending.current = null;
    target()?.focus();
  });
  return (target) => {
    pending.current = target;
  };
}

/**
 * A control disabled while its request runs loses focus (Chromium moves it to the body), and a
 * keyboard user would start again from the top of the page. Call before the request with the
 * control that was used: once the request is over and the control enabled again, it gets focus
 * back, unless focus has gone somewhere else meanwhile (a one-time password's "Done", say).
 */
export function keepFocus(control: HTMLElement): () => void {
  if (document.activeElement !== control) return () => undefined;
  return () =>
    // After Preact's render of the finished state (renders are deferred to a microtask).
    window.requestAnimationFrame(() => {
      const now = document.activeElement;
      if ((now === null || now === document.body) && control.isConnected) control.focus();
    });
}
