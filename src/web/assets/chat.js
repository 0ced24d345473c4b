// The chat of a customer's /help page and of a case page's chat panel: one WebSocket to
// the daemon, JSON messages (src/web/chat.rs says what each means). Every text from the
// network goes in with textContent, never as HTML.
(function () {
  'use strict';
  var help = document.getElementById('help');
  var panel = document.getElementById('case-chat');
  if (!help && !panel) { return; }

  var CASE_KEY = 'sosq.help.case';
  // A case page's panel keeps its lines, and whether its chat is open, per case: any form
  // on the page (a note, the invitation) reloads it, and the chat must come back with it.
  var LINES_KEY = help ? 'sosq.help.lines' : 'sosq.panel.lines.' + panel.dataset.socket;
  var PANEL_KEY = help ? null : 'sosq.panel.open.' + panel.dataset.socket;
  var KEPT_LINES = 200;
  var socket = null;
  var over = false;
  var retries = 0;
  var paired = false;
  var lastAttached = null;

  function $(id) { return document.getElementById(id); }
  function show(id, on) { var el = $(id); if (el) { el.hidden = !on; } }
  function say(id, words) { var el = $(id); if (el) { el.textContent = words; } }
  function load(key) {
    try { return JSON.parse(sessionStorage.getItem(key) || 'null'); } catch (e) { return null; }
  }
  function store(key, value) {
    try { sessionStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }
  function drop(key) {
    try { sessionStorage.removeItem(key); } catch (e) { /* private mode */ }
  }
  function forget() {
    drop(CASE_KEY);
    drop(LINES_KEY);
  }
  function socketUrl(path) {
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
  }
  function clock(ms) {
    var at = new Date(ms);
    return at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  function minutes(seconds) {
    if (seconds < 90) { return 'about a minute'; }
    return 'about ' + Math.round(seconds / 60) + ' minutes';
  }
  // "s204-771-630" read aloud: "s 2 0 4, 7 7 1, 6 3 0".
  function spoken(code) {
    return code.split('-').map(function (part) { return part.split('').join(' '); }).join(', ');
  }

  // One line of the transcript; `line` is {from, name, at_ms, text} or {system: words}.
  function addLine(line, keep) {
    var list = $('lines');
    if (!list) { return; }
    var item = document.createElement('li');
    if (line.system) {
      item.className = 'system';
      item.textContent = line.system;
    } else {
      item.className = line.from === 'you' ? 'you' : 'peer';
      var when = document.createElement('time');
      when.textContent = clock(line.at_ms);
      var who = document.createElement('b');
      who.textContent = (line.from === 'you' ? 'You' : line.name) + ': ';
      var words = document.createElement('span');
      words.textContent = line.text;
      item.appendChild(when);
      item.appendChild(document.createTextNode(' '));
      item.appendChild(who);
      item.appendChild(words);
    }
    list.appendChild(item);
    while (list.children.length > KEPT_LINES) { list.removeChild(list.firstChild); }
    item.scrollIntoView({ block: 'nearest' });
    if (keep !== false) {
      var kept = load(LINES_KEY) || [];
      kept.push(line);
      store(LINES_KEY, kept.slice(-KEPT_LINES));
    }
  }

  var problemTimer = null;
  function problem(words) {
    say('problem', words);
    show('problem', true);
    clearTimeout(problemTimer);
    problemTimer = setTimeout(function () { show('problem', false); }, 8000);
  }

  function place(position, typical) {
    if (!position) { say('place', ''); return; }
    var words = position === 1 ? 'You are next in the queue.' : 'You are number ' + position + ' in the queue.';
    if (typical) { words += ' The usual wait is ' + minutes(typical) + '.'; }
    say('place', words);
  }

  function handle(message) {
    switch (message.type) {
      case 'attached':
        lastAttached = message;
        // A refusal of an earlier try (a blank name) is no longer the news.
        clearTimeout(problemTimer);
        show('problem', false);
        if (help) {
          var kept = load(CASE_KEY) || {};
          store(CASE_KEY, { code: message.code, secret: message.secret || kept.secret, name: message.customer });
          show('ask', false);
          show('waiting', !paired);
          say('code', message.code);
          say('spoken', 'Read aloud: ' + spoken(message.code));
          place(message.position, message.typical_wait_seconds);
          show('say-form', true);
          show('attach-form', true);
          show('end', true);
          say('end', 'End session');
        } else {
          say('chat-state', 'Waiting for ' + message.customer + ' to be connected…');
        }
        break;
      case 'position':
        place(message.position, lastAttached && lastAttached.typical_wait_seconds);
        break;
      case 'paired':
        paired = true;
        show('waiting', false);
        show('chat', true);
        show('say-form', true);
        say('say-label', 'Message');
        say('with', 'Chat with ' + message.name);
        say('chat-state', 'Connected to ' + message.name);
        addLine({ system: message.takes_over ? message.name + ' takes over.' : message.name + ' is with you.' });
        break;
      case 'peer_left':
        paired = false;
        addLine({ system: 'The connection to the other side dropped (' + message.reason + '); waiting for it to come back.' });
        say('chat-state', 'Waiting for the other side to come back…');
        break;
      case 'line':
        show('chat', true);
        addLine(message);
        break;
      case 'notice':
        addLine({ system: message.text });
        break;
      case 'refused':
        problem(message.text);
        break;
      case 'upload':
        uploadProgress(message);
        break;
      case 'uploaded':
        uploadDone();
        addLine({ system: message.text });
        break;
      case 'upload_failed':
        uploadDone();
        problem(message.text);
        break;
      case 'invite':
        invite(message);
        break;
      case 'elsewhere':
        finish(message.text, true);
        break;
      case 'ended':
        finish(message.reason);
        break;
      case 'failed':
        if (message.retry) {
          say('status', message.text);
        } else if (help && !load(CASE_KEY)) {
          problem(message.text);
          enableForm(true);
        } else {
          finish(message.text);
        }
        break;
    }
  }

  // The page is done: the case is over (`takeBack` false: forget it), or its seat was
  // taken by the native client or another tab (`takeBack` true: keep the case, so the
  // customer may take the seat back here).
  function finish(reason, takeBack) {
    over = true;
    if (help) {
      if (takeBack) {
        var saved = load(CASE_KEY);
        if (saved) { saved.elsewhere = reason; store(CASE_KEY, saved); }
      } else {
        forget();
      }
      show('waiting', false);
      show('invite', false);
      show('say-form', false);
      show('attach-form', false);
      show('end', false);
      show('over', true);
      show('take-back', !!takeBack);
      say('over-text', reason);
    } else {
      drop(PANEL_KEY);
      say('chat-state', reason);
      show('say-form', false);
      show('chat-leave', false);
      show('chat-start', true);
    }
    if (socket) { socket.close(); }
  }

  // The expert asks for the native client: the command of this system first.
  function invite(message) {
    var windows = /Win/.test(navigator.platform || navigator.userAgent);
    var mine = message.commands.filter(function (c) { return (c.system === 'windows') === windows; })[0];
    var other = message.commands.filter(function (c) { return c !== mine; })[0];
    say('invite-why', message.expert + ' asks you to run the support program and share ' + message.share + ' with them.');
    say('invite-command', mine ? mine.command : '');
    say('invite-other', other ? other.command : '');
    show('invite', true);
    addLine({ system: message.expert + ' asks you to run the support program (see below).' });
    var section = $('invite');
    if (section) { section.scrollIntoView({ block: 'nearest' }); }
  }

  // A file on its way: PART bytes a message, at most IN_FLIGHT unanswered.
  var PART = 24 * 1024;
  var IN_FLIGHT = 4;
  var upload = null;
  function base64(buffer) {
    var bytes = new Uint8Array(buffer);
    var text = '';
    for (var i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(text);
  }
  function uploadProgress(message) {
    if (!upload) { return; }
    if (upload.started) { upload.inFlight -= 1; } else { upload.started = true; }
    var bar = $('attach-progress');
    if (bar) { bar.value = message.size ? Math.floor(100 * message.received / message.size) : 100; }
    if (message.received >= message.size) {
      send({ type: 'attach_finish' });
      return;
    }
    while (upload.inFlight < IN_FLIGHT && upload.next < upload.file.size) {
      var slice = upload.file.slice(upload.next, upload.next + PART);
      upload.next += PART;
      upload.inFlight += 1;
      var sending = upload;
      sending.chain = sending.chain.then(function (blob) {
        return function () {
          return blob.arrayBuffer().then(function (buffer) {
            if (upload === sending) { send({ type: 'attach_part', data: base64(buffer) }); }
          });
        };
      }(slice));
    }
  }
  function uploadDone() {
    upload = null;
    show('attach-progress', false);
    var button = document.querySelector('#attach-form button');
    if (button) { button.disabled = false; }
    var input = $('attach-file');
    if (input) { input.value = ''; }
  }

  function connect(path, first) {
    over = false;
    var opened = new WebSocket(socketUrl(path));
    socket = opened;
    opened.onopen = function () {
      retries = 0;
      say('status', '');
      if (first) { opened.send(JSON.stringify(first)); }
    };
    opened.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      handle(message);
    };
    opened.onclose = function () {
      if (socket === opened) { socket = null; }
      if (upload) {
        uploadDone();
        problem('The connection dropped while the file was sent; attach it again.');
      }
      if (over) { return; }
      var again = reconnection();
      if (!again) { return; }
      retries += 1;
      var wait = Math.min(10000, 500 * Math.pow(2, retries));
      say('status', 'Connection lost; reconnecting…');
      setTimeout(function () { if (!over && !socket) { connect(again.path, again.first); } }, wait);
    };
  }

  // Where to reconnect, and with what: a customer resumes its saved case.
  function reconnection() {
    if (help) {
      var saved = load(CASE_KEY);
      if (!saved) { return null; }
      return { path: '/chat/customer', first: { type: 'resume', code: saved.code, secret: saved.secret, name: saved.name } };
    }
    return { path: panel.dataset.socket, first: null };
  }

  function send(message) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      problem('Not connected right now; try again in a moment.');
      return false;
    }
    socket.send(JSON.stringify(message));
    return true;
  }

  var sayForm = $('say-form');
  if (sayForm) {
    sayForm.addEventListener('submit', function (event) {
      event.preventDefault();
      var input = $('say');
      var words = input.value;
      if (!words.trim()) { return; }
      if (send({ type: 'say', text: words })) { input.value = ''; }
    });
  }

  var endButton = $('end');
  if (endButton) {
    endButton.addEventListener('click', function () {
      if (window.confirm('End this support session? Your request will be closed.')) { send({ type: 'end' }); }
    });
  }

  function enableForm(on) {
    var button = document.querySelector('#ask-form button');
    if (button) { button.disabled = !on; }
  }

  if (help) {
    var kept = load(LINES_KEY) || [];
    kept.forEach(function (line) { addLine(line, false); });
    if (kept.length) { show('chat', true); }
    var saved = load(CASE_KEY);
    if (saved && saved.elsewhere) {
      // A reload must not take the case back from the program that has it.
      show('ask', false);
      finish(saved.elsewhere, true);
    } else if (saved) {
      show('ask', false);
      show('waiting', true);
      say('code', saved.code);
      say('status', 'Reconnecting to your request…');
      var again = reconnection();
      connect(again.path, again.first);
    }
    var form = $('ask-form');
    form.addEventListener('submit', function (event) {
      event.preventDefault();
      enableForm(false);
      var priority = $('ask-priority');
      connect('/chat/customer', {
        type: 'open',
        name: $('ask-name').value,
        description: $('ask-description').value,
        priority: priority ? priority.value : null,
        profile: help.dataset.profile || null
      });
    });
    var again = $('again');
    if (again) {
      again.href = location.pathname;
      again.addEventListener('click', function () { forget(); });
    }
    var takeBack = $('take-back');
    if (takeBack) {
      takeBack.addEventListener('click', function () {
        var back = reconnection();
        if (!back) { return; }
        var saved = load(CASE_KEY);
        if (saved) { delete saved.elsewhere; store(CASE_KEY, saved); }
        show('over', false);
        show('take-back', false);
        show('waiting', !paired);
        say('status', 'Reconnecting to your request…');
        connect(back.path, back.first);
      });
    }
    var attachForm = $('attach-form');
    if (attachForm) {
      attachForm.addEventListener('submit', function (event) {
        event.preventDefault();
        var input = $('attach-file');
        var file = input.files && input.files[0];
        if (!file || upload) { return; }
        upload = { file: file, next: 0, inFlight: 0, started: false, chain: Promise.resolve() };
        if (!send({ type: 'attach_start', name: file.name, size: file.size })) { upload = null; return; }
        attachForm.querySelector('button').disabled = true;
        var bar = $('attach-progress');
        if (bar) { bar.value = 0; bar.hidden = false; }
      });
    }
    var copy = $('invite-copy');
    if (copy) {
      copy.addEventListener('click', function () {
        if (navigator.clipboard) { navigator.clipboard.writeText($('invite-command').textContent); }
      });
    }
  } else {
    var start = $('chat-start');
    var open = function () {
      store(PANEL_KEY, true);
      show('chat-start', false);
      show('chat-leave', true);
      show('chat', true);
      show('say-form', true);
      say('chat-state', 'Connecting…');
      connect(panel.dataset.socket, null);
    };
    start.addEventListener('click', open);
    if (load(PANEL_KEY)) {
      // Back on the page after a form on it: the same chat, within the time the daemon
      // keeps it for a page that went away.
      (load(LINES_KEY) || []).forEach(function (line) { addLine(line, false); });
      open();
    } else {
      drop(LINES_KEY);
    }
    var leave = $('chat-leave');
    leave.addEventListener('click', function () { send({ type: 'end' }); });
  }
}());
