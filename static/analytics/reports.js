/* The report pages' own script: draws the charts with Apache ECharts (vendored under
   static/vendor/, see its README) from the JSON each page carries (json_script), sorts the
   table by any column, and keeps the filter form simple to use. Every label comes translated
   from the page; nothing here is shown to the reader as text of its own. */
(function () {
  "use strict";

  function darkMode() {
    var theme = document.documentElement.getAttribute("data-theme");
    if (theme === "dark") return true;
    if (theme === "light") return false;
    return !!(window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches);
  }

  function pageData(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  // -- charts ---------------------------------------------------------------------------------

  function trendOption(source) {
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: source.days, boundaryGap: false },
      yAxis: { type: "value", minInterval: 1 },
      series: source.series.map(function (series) {
        return {
          name: series.label, type: "line", data: series.data,
          showSymbol: source.days.length <= 31
        };
      })
    };
  }

  function rankingOption(source) {
    return {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 8, right: 32, top: 8, bottom: 8, containLabel: true },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: {
        type: "category", data: source.names,
        axisLabel: { width: 120, overflow: "truncate" }
      },
      series: source.series.map(function (series) {
        return {
          name: series.label, type: "bar", data: series.data,
          label: { show: true, position: "right" }
        };
      })
    };
  }

  // The quality page: each channel's score as its parts' stacked contributions.
  function qualityPartsOption(source) {
    return {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0 },
      grid: { left: 8, right: 24, top: 48, bottom: 8, containLabel: true },
      xAxis: { type: "value", max: 100 },
      yAxis: {
        type: "category", data: source.names,
        axisLabel: { width: 120, overflow: "truncate" }
      },
      series: source.series.map(function (series) {
        return { name: series.label, type: "bar", stack: "score", data: series.data };
      })
    };
  }

  // The quality page: ranks per hour, 1 at the top.
  function qualityRanksOption(source) {
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0, type: "scroll" },
      grid: { left: 8, right: 16, top: 36, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: source.hours, boundaryGap: false },
      yAxis: { type: "value", inverse: true, min: 1, minInterval: 1 },
      series: source.series.map(function (series) {
        return {
          name: series.label, type: "line", data: series.data, connectNulls: false,
          showSymbol: source.hours.length <= 48
        };
      })
    };
  }

  var OPTIONS = {
    trend: trendOption, ranking: rankingOption,
    quality_parts: qualityPartsOption, quality_ranks: qualityRanksOption
  };

  function drawCharts() {
    if (!window.echarts) return;
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (element) {
      var source = pageData(element.getAttribute("data-source"));
      var option = OPTIONS[element.getAttribute("data-chart")];
      if (!source || !option) return;
      var chart = window.echarts.init(element, darkMode() ? "dark" : null);
      chart.setOption(Object.assign(option(source), { backgroundColor: "transparent" }));
      charts.push(chart);
    });
    window.addEventListener("resize", function () {
      charts.forEach(function (chart) { chart.resize(); });
    });
  }

  // -- sorting --------------------------------------------------------------------------------

  // A cell's sort key: its data-sort (the raw figure; "" is null), numbers for figure columns.
  function sortKey(cell, numeric) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) raw = cell.textContent.trim();
    if (!numeric) return raw;
    return raw === "" ? null : parseFloat(raw);
  }

  function makeSortable(table) {
    var headings = table.tHead.rows[0].cells;
    var collator = new Intl.Collator(document.documentElement.lang || undefined, { numeric: true });
    Array.prototype.forEach.call(headings, function (heading, index) {
      var button = heading.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        var numeric = heading.getAttribute("data-kind") !== "text";
        var current = heading.getAttribute("aria-sort");
        // First click: figures from the largest, names from A; then each click reverses.
        var ascending = current ? current === "descending" : !numeric;
        var body = table.tBodies[0];
        var rows = Array.prototype.filter.call(body.rows, function (row) {
          return row.cells.length === headings.length;
        });
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[index], numeric);
          var y = sortKey(b.cells[index], numeric);
          if (x === null || y === null) return (x === null) - (y === null); // nulls last
          var order = numeric ? x - y : collator.compare(x, y);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
        Array.prototype.forEach.call(headings, function (other) {
          other.removeAttribute("aria-sort");
        });
        heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      });
    });
  }

  // -- filters --------------------------------------------------------------------------------

  function filterForm(form) {
    var period = form.elements.period;
    var corp = form.elements.corp;
    ["from", "to"].forEach(function (name) {
      var input = form.elements[name];
      if (input && period) {
        input.addEventListener("change", function () { period.value = "custom"; });
      }
    });
    if (period) {
      period.addEventListener("change", function () {
        if (period.value !== "custom") form.submit();
      });
    }
    if (corp && corp.tagName === "SELECT") {
      corp.addEventListener("change", function () {
        // Channels, codes and groups belong to a corp: another corp starts from all of them.
        ["channel", "live_code", "channel_group"].forEach(function (name) {
          if (form.elements[name]) form.elements[name].value = "";
        });
        form.submit();
      });
    }
  }

  drawCharts();
  document.querySelectorAll("table[data-sortable]").forEach(makeSortable);
  var form = document.getElementById("report-filters");
  if (form) filterForm(form);
})();
