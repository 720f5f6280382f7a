// agentledger console: live updates from the log, and the time control. No framework, no build step.
"use strict";
(function () {
  const body = document.body;

  // -- live: each time the log moves, fetch this page's changing part and swap it in -----------------
  function follow() {
    const url = body.dataset.liveUrl;
    if (body.dataset.live !== "1" || !url || !window.EventSource) return;
    const status = document.getElementById("stream");
    const live = document.getElementById("live");
    let fetching = false, again = false;
    async function refresh() {
      if (fetching) { again = true; return; }
      fetching = true;
      try {
        const response = await fetch(url, {headers: {"Accept": "text/html"}, cache: "no-store"});
        if (response.ok && live) {
          const html = await response.text();
          const open = [...live.querySelectorAll("details[open]")].map((d) => d.querySelector("summary")?.textContent);
          live.innerHTML = html;
          live.querySelectorAll("details").forEach((d) => {
            if (open.includes(d.querySelector("summary")?.textContent)) d.open = true;
          });
          const actions = document.getElementById("actions");  // outside: what is typed there survives a redraw
          if (actions && live.querySelector('#session-title [data-status="stopped"]')) actions.hidden = true;
          body.dataset.refreshed = String(Date.now());
        }
      } catch (e) { /* the next event or tick tries again */ }
      fetching = false;
      if (again) { again = false; refresh(); }
    }
    const source = new EventSource("/events");
    let first = true;
    source.addEventListener("open", () => { body.dataset.stream = "open"; if (status) status.textContent = "live"; });
    source.addEventListener("error", () => { body.dataset.stream = "closed"; if (status) status.textContent = "reconnecting…"; });
    source.addEventListener("log", (event) => {
      const position = Number(event.data);
      body.dataset.position = String(position);
      const shown = document.getElementById("position");
      if (shown) shown.textContent = String(position);
      const slider = document.getElementById("as-of-slider");
      if (slider && Number(slider.max) < position) {  // live: the thumb stays at the end of the log
        slider.max = String(position);
        slider.value = String(position);
        const label = document.getElementById("as-of-shown");
        if (label) label.textContent = "@" + position;
      }
      if (first) { first = false; return; }  // the page was drawn at this position already
      refresh();
    });
    // Fuses lapse with no event in the log: redraw now and then so "running" turns "unwatched" on time.
    setInterval(refresh, 10000);
  }

  // -- the time control: the slider picks a log position; letting go shows the page as of it ---------
  function timeControl() {
    const slider = document.getElementById("as-of-slider");
    const box = document.getElementById("as-of");
    const shown = document.getElementById("as-of-shown");
    const form = document.getElementById("timebar");
    if (!slider || !box || !form) return;
    slider.addEventListener("input", () => { if (shown) shown.textContent = "@" + slider.value; });
    slider.addEventListener("change", () => {
      if (slider.value === slider.max && !box.value) return;  // already live
      box.value = "@" + slider.value;
      sessionStorage.setItem("agentledger-slider", "1");  // the next page gives the slider its focus back
      form.submit();
    });
    if (sessionStorage.getItem("agentledger-slider")) {  // stepping with the arrow keys: one position a press
      sessionStorage.removeItem("agentledger-slider");
      slider.focus();
    }
  }

  follow();
  timeControl();
})();
