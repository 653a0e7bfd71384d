import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { selectTransport } from './api/select-transport';
import { App } from './app';
import { AdminUrlHelp } from './components/admin-url-help';
import { notifyNewPending } from './notify/pending-notifier';
import { createAppStore } from './store/app-store';
import { bindApi } from './store/bind-api';
import { AppProvider } from './store/context';
import { setPeerTab } from './store/peers-slice';
import { showView } from './store/session-slice';
import './styles.css';

const root = createRoot(document.getElementById('root')!);
const transport = selectTransport(window);
if (!transport.api) {
  root.render(<AdminUrlHelp title="No admin token" detail={transport.problem} />);
} else {
  const store = createAppStore();
  const api = transport.api;
  bindApi(store, api, {
    onNewPending: (peer) =>
      notifyNewPending(peer, () => {
        showView(store, 'peers');
        setPeerTab(store, 'pending');
      }),
  });
  root.render(
    <StrictMode>
      <AppProvider value={{ store, api }}>
        <App />
      </AppProvider>
    </StrictMode>,
  );
}
