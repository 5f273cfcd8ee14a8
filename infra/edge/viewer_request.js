// CloudFront viewer-request function (runtime cloudfront-js-2.0, strict mode, limit 10 KB) for the pypi-cdn mirror.
// Runs before the cache: it picks the object a request needs, so the cache key is the rewritten URI, never Accept.
//   /simple/ and /simple/<name>/ -> simple/[<name>/]index.v1_json or index.html (PEP 691 negotiation)
//   /simple/<name> or a non-normalized name -> 301 to /simple/<normalized>/ (PEP 503), query kept
//   /packages/... and /status.json (the mirror's status) -> unchanged
//   anything else, '..', backslashes and control characters -> 404

var JSON_TYPE = 'application/vnd.pypi.simple.v1+json';
var HTML_TYPE = 'application/vnd.pypi.simple.v1+html';
var TEXT_HTML = 'text/html';
var ALIASES = {
    'application/vnd.pypi.simple.latest+json': JSON_TYPE,
    'application/vnd.pypi.simple.latest+html': HTML_TYPE,
};
// Ties go to the earlier offer: HTML first, as PyPI does, so clients that accept anything keep getting HTML.
var OFFERS = [
    { type: TEXT_HTML, key: 'index.html' },
    { type: HTML_TYPE, key: 'index.html' },
    { type: JSON_TYPE, key: 'index.v1_json' },
];
var PROJECT_NAME = /^([a-z0-9]|[a-z0-9][a-z0-9._-]*[a-z0-9])$/i;
var MAX_NAME_LENGTH = 200;
var FORBIDDEN = /\.\.|[\\\u0000-\u001f\u007f]/;
var SIMPLE_PATH = /^\/simple\/(?:([^/]+)(\/?))?$/;
var STATUS_PATH = '/status.json';
// The work per request is bounded whatever the viewer sends: only the first MAX_ACCEPT_LENGTH characters of Accept
// are read (real clients send under 200), as at most MAX_RANGES media ranges of at most MAX_PARAMS parameters.
var MAX_ACCEPT_LENGTH = 1024;
var MAX_RANGES = 16;
var MAX_PARAMS = 8;

// Media ranges of an Accept header as [{type, q}]; malformed ranges are dropped.
function parseAccept(header) {
    var ranges = [];
    var parts = header.slice(0, MAX_ACCEPT_LENGTH).split(',', MAX_RANGES);
    for (var i = 0; i < parts.length; i++) {
        var params = parts[i].split(';', MAX_PARAMS);
        var type = params[0].trim().toLowerCase();
        if (!/^[a-z0-9!#$&^_.+*-]+\/[a-z0-9!#$&^_.+*-]+$/.test(type)) {
            continue;
        }
        var q = 1;
        for (var j = 1; j < params.length; j++) {
            var param = params[j].split('=');
            if (param.length === 2 && param[0].trim().toLowerCase() === 'q') {
                q = /^\s*(0(\.\d{0,3})?|1(\.0{0,3})?)\s*$/.test(param[1]) ? parseFloat(param[1]) : -1;
            }
        }
        if (q >= 0) {
            ranges.push({ type: ALIASES[type] || type, q: q });
        }
    }
    return ranges;
}

// The q-value the client gives `type`: from the most specific matching range (exact > type/* > */*), else 0.
function quality(ranges, type) {
    var best = 0;
    var bestSpecificity = 0;
    var family = type.split('/')[0] + '/*';
    for (var i = 0; i < ranges.length; i++) {
        var range = ranges[i].type;
        var specificity = range === type ? 3 : range === family ? 2 : range === '*/*' ? 1 : 0;
        if (specificity > bestSpecificity || (specificity === bestSpecificity && specificity > 0 && ranges[i].q > best)) {
            bestSpecificity = specificity;
            best = ranges[i].q;
        }
    }
    return best;
}

// The offer the client prefers most (q > 0), or null when it accepts none of them.
function negotiate(accept) {
    var ranges = parseAccept(accept);
    var chosen = null;
    var chosenQ = 0;
    for (var i = 0; i < OFFERS.length; i++) {
        var q = quality(ranges, OFFERS[i].type);
        if (q > chosenQ) {
            chosen = OFFERS[i];
            chosenQ = q;
        }
    }
    return chosen;
}

function headerValue(headers, name) {
    var header = headers[name];
    if (!header) {
        return null;
    }
    if (header.multiValue) {
        var values = [];
        var length = 0;
        for (var i = 0; i < header.multiValue.length && length < MAX_ACCEPT_LENGTH; i++) {
            values.push(header.multiValue[i].value);
            length += header.multiValue[i].value.length + 1;
        }
        return values.join(',');
    }
    return header.value;
}

// The viewer's query string, as it sent it (CloudFront keeps the percent-encoding), with a leading '?'.
function queryString(querystring) {
    var items = [];
    for (var name in querystring) {
        var entry = querystring[name];
        var values = entry.multiValue ? entry.multiValue : [entry];
        for (var i = 0; i < values.length; i++) {
            items.push(values[i].value === '' ? name : name + '=' + values[i].value);
        }
    }
    return items.length ? '?' + items.join('&') : '';
}

function textResponse(statusCode, statusDescription, text, extraHeaders) {
    var headers = extraHeaders || {};
    headers['content-type'] = { value: 'text/plain; charset=utf-8' };
    return {
        statusCode: statusCode,
        statusDescription: statusDescription,
        headers: headers,
        body: { encoding: 'text', data: text },
    };
}

function notFound() {
    return textResponse(404, 'Not Found', '404 Not Found\n');
}

function redirect(path, querystring) {
    var location = path + queryString(querystring || {});
    return textResponse(301, 'Moved Permanently', 'Moved to ' + location + '\n', { location: { value: location } });
}

function handler(event) {
    var request = event.request;
    var path;
    try {
        path = decodeURIComponent(request.uri);
    } catch (e) {
        return notFound();
    }
    if (FORBIDDEN.test(path)) {
        return notFound();
    }
    if (path.indexOf('/packages/') === 0 && path.length > '/packages/'.length) {
        return request;
    }
    if (path === STATUS_PATH) {
        return request;
    }
    if (path === '/simple') {
        return redirect('/simple/', request.querystring);
    }
    var match = SIMPLE_PATH.exec(path);
    if (!match) {
        return notFound();
    }
    var prefix = '/simple/';
    if (match[1] !== undefined) {
        var name = match[1];
        if (name.length > MAX_NAME_LENGTH || !PROJECT_NAME.test(name)) {
            return notFound();
        }
        var normalized = name.replace(/[-_.]+/g, '-').toLowerCase();
        if (normalized !== name || match[2] !== '/') {
            return redirect(prefix + normalized + '/', request.querystring);
        }
        prefix += normalized + '/';
    }
    var format = request.querystring && request.querystring.format;
    var accept;
    if (format) {
        try {
            accept = decodeURIComponent(format.value);
        } catch (e) {
            accept = '';
        }
    } else {
        accept = headerValue(request.headers || {}, 'accept');
        if (accept === null || accept.trim() === '') {
            accept = '*/*';
        }
    }
    var offer = negotiate(accept);
    if (!offer) {
        return textResponse(406, 'Not Acceptable',
            '406 Not Acceptable: this index serves ' + JSON_TYPE + ', ' + HTML_TYPE + ' and ' + TEXT_HTML + '\n',
            { vary: { value: 'Accept' } });
    }
    request.uri = prefix + offer.key;
    return request;
}
