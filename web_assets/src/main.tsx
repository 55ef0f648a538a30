// The dashboard's entry: layout, navigation, live status, and the page for
// the current URL.
import { render } from "preact";
import { useState } from "preact/hooks";
import { ConfirmDialog, Notices, TokenPrompt } from "./components/dialogs";
import { useNow } from "./hooks";
import { live, liveState } from "./live";
import { DeadLetters } from "./pages/DeadLetters";
import { Overview } from "./pages/Overview";
import { Queue } from "./pages/Queue";
import { Schedules } from "./pages/Schedules";
import { Task } from "./pages/Task";
import { Tasks } from "./pages/Tasks";
import { Workers } from "./pages/Workers";
import { dropPreload } from "./preload";
import { href, useRoute, type Route } from "./router";
import { useSignal } from "./signal";
import "./styles.css";

const NAV: [Route["page"][], string, string][] = [
  [["overview", "queue"], "Overview", href.overview()],
  [["tasks", "task"], "Tasks", href.tasks()],
  [["dead"], "Dead letters", href.dead()],
  [["workers"], "Workers", href.workers()],
  [["schedules"], "Schedules", href.schedules()],
];

/** "live", "connecting…" or "offline, retrying in 4 s". */
function LiveBadge() {
  const s = useSignal(liveState);
  const now = useNow(500);
  if (s.state === "online")
    return (
      <span class="live online" data-testid="live-status" data-state="online">
        live
      </span>
    );
  if (s.state === "connecting")
    return (
      <span class="live connecting" data-testid="live-status" data-state="connecting">
        connecting…
      </span>
    );
  const secs = Math.max(0, Math.ceil((s.retryAt - now) / 1000));
  return (
    <span class="live offline" data-testid="live-status" data-state="offline" title={s.reason}>
      {`offline — reconnecting${secs ? ` in ${secs} s` : "…"}`}
    </span>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "overview":
      return <Overview />;
    case "queue":
      return <Queue name={route.name} />;
    case "tasks":
      return <Tasks params={route.params} />;
    case "task":
      return <Task id={route.id} />;
    case "dead":
      return <DeadLetters params={route.params} />;
    case "workers":
      return <Workers />;
    case "schedules":
      return <Schedules />;
    default:
      return (
        <div class="page">
          <h1>Not found</h1>
          <p>
            {"No page at "}
            <code>{route.path}</code>
            {". "}
            <a href={href.overview()}>Go to the overview</a>
          </p>
        </div>
      );
  }
}

function App() {
  const route = useRoute();
  // A new token remounts the page, so everything is fetched with it.
  const [epoch, setEpoch] = useState(0);
  return (
    <div class="app">
      <header class="top">
        <a class="brand" href={href.overview()}>
          tqd
        </a>
        <nav>
          {NAV.map(([pages, label, to]) => (
            <a key={label} href={to} class={pages.includes(route.page) ? "active" : ""}>
              {label}
            </a>
          ))}
        </nav>
        <LiveBadge />
      </header>
      <main key={epoch}>
        <Page route={route} />
      </main>
      <Notices />
      <ConfirmDialog />
      <TokenPrompt
        onToken={() => {
          setEpoch((n) => n + 1);
          live.restart();
        }}
      />
    </div>
  );
}

live.start();
render(<App />, document.getElementById("app")!);
// The first page has asked for its data (layout effects run within render).
dropPreload();
