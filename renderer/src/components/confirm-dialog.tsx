import { useEffect, useRef, type ReactNode } from 'react';

export interface ConfirmRequest {
  readonly title: string;
  readonly body: ReactNode;
  readonly confirmLabel: string;
  readonly danger?: boolean;
  readonly onConfirm: () => void;
}

/**
 * A modal confirmation on the native <dialog>: focus is trapped, Escape cancels, and the
 * safe choice (Cancel) has the focus first.
 */
export function ConfirmDialog({ request, onClose }: { request: ConfirmRequest | undefined; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (request && !d.open) {
      d.showModal();
      cancel.current?.focus();
    } else if (!request && d.open) d.close();
  }, [request]);
  return (
    <dialog ref={ref} className="dialog" aria-labelledby="confirm-title" aria-describedby="confirm-body" onClose={onClose}>
      {request ? (
        <form
          method="dialog"
          onSubmit={(e) => {
            e.preventDefault();
            request.onConfirm();
            onClose();
          }}
        >
          <h2 id="confirm-title">{request.title}</h2>
          <div id="confirm-body">{request.body}</div>
          <div className="dialog-actions">
            <button type="button" ref={cancel} onClick={onClose}>
              Cancel
            </button>
            <button type="submit" className={request.danger ? 'danger' : 'primary'}>
              {request.confirmLabel}
            </button>
          </div>
        </form>
      ) : null}
    </dialog>
  );
}
