// The few Grafana dashboard shapes the mixin uses (schema 39: time-series
// and stat panels in collapsed-free rows, template variables for the data
// source, the installation and the tenant). Panels are laid out three to a
// row in the order given.
local panelWidth = 8;
local panelHeight = 8;

{
  // A PromQL query of a panel; `legend` is Grafana's legend format.
  target(expr, legend='')::
    { expr: expr, legendFormat: legend, refId: 'A', datasource: { type: 'prometheus', uid: '${datasource}' } },

  // A time-series panel. unit: Grafana's unit id (short, s, bytes, Bps, reqps, percentunit, ...).
  timeseries(title, targets, unit='short', description='', stack=false):: {
    type: 'timeseries',
    title: title,
    description: description,
    datasource: { type: 'prometheus', uid: '${datasource}' },
    targets: std.mapWithIndex(function(i, t) t { refId: std.char(65 + i) }, targets),
    fieldConfig: {
      defaults: {
        unit: unit,
        min: 0,
        custom: {
          lineWidth: 1,
          fillOpacity: if stack then 40 else 10,
          stacking: { mode: if stack then 'normal' else 'none' },
          showPoints: 'never',
        },
      },
      overrides: [],
    },
    options: {
      legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  },

  // A single-number panel.
  stat(title, target, unit='short', description=''):: {
    type: 'stat',
    title: title,
    description: description,
    datasource: { type: 'prometheus', uid: '${datasource}' },
    targets: [target { refId: 'A' }],
    fieldConfig: { defaults: { unit: unit }, overrides: [] },
    options: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'area' },
  },

  row(title):: { type: 'row', title: title, collapsed: false, panels: [] },

  // Template variables.
  datasourceVariable:: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    current: {},
    hide: 0,
  },
  queryVariable(name, label, query, multi=false, includeAll=false):: {
    name: name,
    label: label,
    type: 'query',
    datasource: { type: 'prometheus', uid: '${datasource}' },
    query: { query: query, refId: name },
    definition: query,
    refresh: 2,
    sort: 1,
    multi: multi,
    includeAll: includeAll,
    [if includeAll then 'allValue']: '.+',
    current: {},
    hide: 0,
  },
  textVariable(name, label, default):: {
    name: name,
    label: label,
    type: 'textbox',
    query: default,
    current: { text: default, value: default },
    hide: 0,
  },

  // A dashboard of `items` (panels and rows), laid out in a grid: a row
  // takes a line of its own, panels fill lines three at a time.
  dashboard(uid, title, description, items, variables, config):: {
    local place(acc, item) =
      if item.type == 'row' then
        local y = if acc.x == 0 then acc.y else acc.y + panelHeight;
        acc {
          x: 0,
          y: y + 1,
          panels+: [item { id: std.length(acc.panels) + 1, gridPos: { x: 0, y: y, w: 24, h: 1 } }],
        }
      else
        local next = acc.x + panelWidth;
        acc {
          x: if next >= 24 then 0 else next,
          y: if next >= 24 then acc.y + panelHeight else acc.y,
          panels+: [item { id: std.length(acc.panels) + 1, gridPos: { x: acc.x, y: acc.y, w: panelWidth, h: panelHeight } }],
        },
    uid: uid,
    title: title,
    description: description,
    tags: config.dashboardTags,
    editable: true,
    graphTooltip: 1,
    refresh: config.dashboardRefresh,
    schemaVersion: 39,
    timezone: config.dashboardTimezone,
    time: { from: 'now-6h', to: 'now' },
    templating: { list: variables },
    annotations: { list: [] },
    links: [{ type: 'dashboards', tags: config.dashboardTags, asDropdown: true, title: 'Strata', includeVars: true, keepTime: true }],
    panels: std.foldl(place, items, { x: 0, y: 0, panels: [] }).panels,
  },
}
