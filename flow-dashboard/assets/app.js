// tideflow's dashboard: one live region per page. When its event stream says something
// changed, the page is asked again for that region (header X-Fragment: live) and the
// region replaced; a stream's `end` event does it once more and closes the stream.
(function () {
  const region = document.getElementById("live");
  if (!region || !region.dataset.live) return;
  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(location.href, { headers: { "X-Fragment": "live" } });
      if (response.ok) region.innerHTML = await response.text();
    } catch (e) {
      // The server went away: the next event (if any) tries again.
    }
    busy = false;
    if (again) { again = false; refresh(); }
  }
  const stream = new EventSource(region.dataset.live);
  stream.addEventListener("update", refresh);
  stream.addEventListener("runs", refresh);
  stream.addEventListener("end", function () { stream.close(); refresh(); });
})();
