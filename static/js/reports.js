// The cost report's two charts, drawn with Chart.js from the figures the page embeds.
(function () {
  "use strict";
  function draw() {
    var source = document.getElementById("report-chart");
    if (!source || typeof Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    var usd = function (v) { return "$" + Number(v).toLocaleString(undefined, { maximumFractionDigits: 4 }); };
    var money = { ticks: { callback: usd }, beginAtZero: true };
    var tooltip = { callbacks: { label: function (c) { return c.dataset.label + ": " + usd(c.parsed.y); } } };
    var months = document.getElementById("chart-months");
    if (months) {
      new Chart(months, {
        data: {
          labels: data.months.labels,
          datasets: [
            { type: "bar", label: "Local", data: data.months.local, backgroundColor: "#10b981", stack: "spend" },
            { type: "bar", label: "Cloud", data: data.months.cloud, backgroundColor: "#6366f1", stack: "spend" },
            { type: "line", label: "All-cloud", data: data.months.all_cloud, borderColor: "#f59e0b", backgroundColor: "#f59e0b" }
          ]
        },
        options: { maintainAspectRatio: false, animation: false, scales: { x: { stacked: true }, y: Object.assign({ stacked: true }, money) }, plugins: { tooltip: tooltip } }
      });
    }
    var rows = document.getElementById("chart-rows");
    if (rows) {
      new Chart(rows, {
        type: "bar",
        data: {
          labels: data.rows.labels,
          datasets: [
            { label: "Spend", data: data.rows.cost, backgroundColor: "#6366f1" },
            { label: "All-cloud", data: data.rows.all_cloud, backgroundColor: "#fcd34d" }
          ]
        },
        options: { maintainAspectRatio: false, animation: false, scales: { y: money }, plugins: { tooltip: tooltip } }
      });
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
