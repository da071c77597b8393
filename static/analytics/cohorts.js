/* The cohort page's heatmap (Apache ECharts, vendored): mature cells coloured by a visualMap,
   immature ones (null in the report) as a second series, grey and hatched, outside the
   visualMap. The filters' selects of the matrix (cohorts by, metric, split) submit at once. */
(function () {
  "use strict";

  function pageData(id) {
    var element = document.getElementById(id);
    return element ? JSON.parse(element.textContent) : null;
  }

  function formatter(kind) {
    return function (value) {
      if (value === null || value === undefined) return "—";
      if (kind === "money") return "¥" + Number(value).toFixed(2);
      return (Number(value) * 100).toFixed(1) + "%";
    };
  }

  function heatmapOption(source) {
    var format = formatter(source.kind);
    var values = source.cells.map(function (cell) { return cell[2]; });
    var max = values.length ? Math.max.apply(null, values) : 1;
    var min = values.length ? Math.min.apply(null, values.concat([0])) : 0;
    return {
      backgroundColor: "transparent",
      tooltip: {
        formatter: function (item) {
          var row = source.rows[item.value[1]];
          var size = source.sizes[item.value[1]];
          var text = item.seriesIndex === 1 ? source.labels.pending : format(item.value[2]);
          return row + " (" + source.labels.size + " " + size + ")<br>" +
            source.labels.age + " " + source.columns[item.value[0]] + ": " + text;
        }
      },
      grid: { left: 8, right: 24, top: 8, bottom: 72, containLabel: true },
      xAxis: { type: "category", data: source.columns, name: source.labels.age,
               nameLocation: "middle", nameGap: 24, splitArea: { show: true } },
      yAxis: { type: "category", data: source.rows, inverse: true, splitArea: { show: true },
               axisLabel: { width: 200, overflow: "truncate" } },
      visualMap: {
        seriesIndex: 0, min: min, max: max || 1, calculable: true, orient: "horizontal",
        left: "center", bottom: 0, formatter: format,
        inRange: { color: ["#f7fbff", "#9ecae1", "#2171b5", "#08306b"] }
      },
      series: [
        { name: source.metric, type: "heatmap", data: source.cells,
          label: { show: source.columns.length <= 16 && source.rows.length <= 40,
                   formatter: function (item) { return format(item.value[2]); }, fontSize: 10 },
          emphasis: { itemStyle: { borderColor: "#333", borderWidth: 1 } } },
        { name: source.labels.pending, type: "heatmap", data: source.pending,
          itemStyle: {
            color: "#d9d9d9", borderColor: "#fff", borderWidth: 1,
            decal: { symbol: "rect", symbolSize: 1, dashArrayX: [1, 0], dashArrayY: [2, 4],
                     rotation: -Math.PI / 4, color: "rgba(0, 0, 0, 0.25)" }
          } }
      ]
    };
  }

  function draw() {
    var element = document.getElementById("cohort-chart");
    var source = pageData("cohort-data");
    if (!element || !source || !window.echarts) return;
    // A row is 22 pixels, between the card's usual height and what a screen can scroll.
    element.style.height = Math.min(1600, Math.max(320, source.rows.length * 22 + 110)) + "px";
    var chart = window.echarts.init(element);
    chart.setOption(heatmapOption(source));
    window.addEventListener("resize", function () { chart.resize(); });
  }

  function submitOnChange() {
    var form = document.getElementById("report-filters");
    if (!form) return;
    ["cohort_period", "metric", "by"].forEach(function (name) {
      var select = form.elements[name];
      if (select) select.addEventListener("change", function () { form.submit(); });
    });
  }

  draw();
  submitOnChange();
})();
