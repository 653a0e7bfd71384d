import type { PeerView } from '../../../core/admin/contract.js';

/** Whether desktop notifications can be asked for here (a browser that has not decided yet). */
export function notificationsAskable(): boolean {
  return typeof Notification !== 'undefined' && Notification.permission === 'default';
}

/** Must run from a click: browsers only ask for permission on a user gesture. */
export async function askForNotifications(): Promise<NotificationPermission | 'unsupported'> {
  if (typeof Notification === 'undefined') return 'unsupported';
  return Notification.requestPermission();
}

/** A desktop notification for a peer waiting for the admin (no-op where not allowed). */
export function notifyNewPending(peer: PeerView, onClick: () => void): void {
  if (typeof Notification === 'undefined' || Notification.permission !== 'granted') return;
  try {
    const n = new Notification('Peer waiting for approval', {
      body: `${peer.address} asks to be registered${peer.lanAddress ? ` (from ${peer.lanAddress})` : ''}.`,
      tag: `pending:${peer.name}`,
    });
    n.onclick = () => {
      window.focus();
      onClick();
    };
  } catch {
    // Some hosts (Android Chrome) only allow notifications from a service worker: the badge is enough.
  }
}
