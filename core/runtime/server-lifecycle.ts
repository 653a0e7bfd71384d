import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens and resolves with the bound address and its URL host form (`[::1]` for IPv6); rejects on EADDRINUSE etc. */
export async function listen(server: Server, port: number, host: string): Promise<{ address: AddressInfo; urlHost: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return { address, urlHost: address.family === 'IPv6' ? `[${address.address}]` : address.address };
}

/** Whether `address` (as a bound socket reports it) is on the loopback interface: 127.0.0.0/8, ::1, or IPv4-mapped 127.x. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase().replace(/^::ffff:/, '');
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/**
 * Whether a request's Host header names a listener on loopback port `port` (bound as
 * `urlHost`): 127.0.0.1, localhost, [::1] or the bound address itself, with the port. A page on
 * another site that rebinds its name to 127.0.0.1 sends its own name here (DNS rebinding).
 */
export function loopbackHostAllowed(host: string | undefined, port: number, urlHost: string): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  return h === `127.0.0.1:${port}` || h === `localhost:${port}` || h === `[::1]:${port}` || h === `${urlHost}:${port}`;
}

/** Stops accepting, drops idle and active HTTP connections (upgraded sockets are the caller's), and waits. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
