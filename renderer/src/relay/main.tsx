import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import '../styles.css';
import { Dashboard } from './dashboard';
import { pollStatus, takeStatusToken, type PollState } from './status-poller';

/**
 * The relay dashboard (relay.html): served by the relay's status endpoint (`relay
 * --admin-listen`), it polls GET /api/status with the token from the URL fragment.
 */
function Live({ token }: { token: string }) {
  const [state, setState] = useState<PollState>({ kind: 'connecting' });
  useEffect(() => pollStatus(token, setState), [token]);
  return <Dashboard state={state} />;
}

const root = createRoot(document.getElementById('root')!);
const token = takeStatusToken(window);
root.render(
  token ? (
    <StrictMode>
      <Live token={token} />
    </StrictMode>
  ) : (
    <main className="fatal" role="alert">
      <h1>Contact Point relay</h1>
      <p>No status token. Open the dashboard URL that `contact-point relay --admin-listen …` printed: it ends in #token=…. It is also in relay-admin.json in the relay&apos;s state folder.</p>
    </main>
  ),
);
