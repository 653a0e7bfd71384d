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

/** Stops accepting, drops idle and active HTTP connections (upgraded sockets are the caller's), and waits. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
