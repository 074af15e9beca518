// A browser softphone on JsSIP for the registrar's WebSocket test. drive.mjs calls
// window.phone.* and receives what happens through window.emit (a function it exposes).
//
// Media: only signalling is under test. The peer is baresip, which speaks plain RTP/AVP,
// while the browser's RTCPeerConnection speaks only DTLS-SRTP with ICE. So the SDP is
// translated at the edge (JsSIP's 'sdp' event): what goes out is rewritten to plain RTP/AVP
// with PCMU, what comes in is dressed as WebRTC (a made-up fingerprint and ICE credentials,
// rtcp-mux) so that the browser accepts it. No media flows; INVITE, 200, ACK and BYE do.
'use strict';

(function () {
  let ua = null;
  let session = null;
  let domain = '';

  const emit = (event, fields) => window.emit(Object.assign({ event }, fields || {}));

  /** The SDP we send: plain RTP/AVP, PCMU only, no ICE or DTLS lines. */
  function plainSdp(sdp) {
    const out = [];
    for (const line of sdp.split(/\r?\n/)) {
      if (line.startsWith('m=audio')) {
        out.push('m=audio 40000 RTP/AVP 0');
      } else if (line.startsWith('m=')) {
        const kind = line.slice(2).split(' ')[0];
        out.push(`m=${kind} 0 RTP/AVP 0`);
      } else if (/^(v|o|s|t)=/.test(line)) {
        out.push(line);
      } else if (line.startsWith('c=')) {
        out.push('c=IN IP4 127.0.0.1');
      } else if (line === 'a=rtpmap:0 PCMU/8000' || line === 'a=sendrecv') {
        out.push(line);
      }
    }
    return out.join('\r\n') + '\r\n';
  }

  /** The SDP we receive, as the browser needs it: DTLS-SRTP profile, ICE credentials,
   *  a fingerprint, rtcp-mux, a mid. */
  function webrtcSdp(sdp, type) {
    const fingerprint = Array.from({ length: 32 }, () => 'AB').join(':');
    const out = [];
    let mid = 0;
    for (const line of sdp.split(/\r?\n/)) {
      if (!line) continue;
      if (line.startsWith('m=')) {
        const [kind, port, , ...formats] = line.slice(2).split(' ');
        out.push(`m=${kind} ${port} UDP/TLS/RTP/SAVPF ${formats.join(' ')}`);
        out.push(`a=mid:${mid++}`);
        out.push('a=ice-ufrag:sbtest');
        out.push('a=ice-pwd:switchboardtestpassword0');
        out.push(`a=fingerprint:sha-256 ${fingerprint}`);
        out.push(`a=setup:${type === 'offer' ? 'actpass' : 'active'}`);
        out.push('a=rtcp-mux');
      } else if (!/^a=(rtcp|mid|setup|fingerprint|ice-)/.test(line)) {
        out.push(line);
      }
    }
    return out.join('\r\n') + '\r\n';
  }

  function follow(s) {
    session = s;
    s.on('sdp', (e) => {
      e.sdp = e.originator === 'local' ? plainSdp(e.sdp) : webrtcSdp(e.sdp, e.type);
    });
    s.on('progress', () => emit('progress', { originator: s.direction }));
    s.on('accepted', () => emit('accepted', { direction: s.direction }));
    s.on('confirmed', () => emit('confirmed', { direction: s.direction }));
    s.on('ended', (e) => emit('ended', { direction: s.direction, originator: e.originator, cause: e.cause }));
    s.on('failed', (e) => emit('failed', { direction: s.direction, originator: e.originator, cause: e.cause }));
  }

  window.phone = {
    /** Registers `user` over the WebSocket `url`. */
    start(cfg) {
      domain = cfg.domain;
      const socket = new JsSIP.WebSocketInterface(cfg.url);
      ua = new JsSIP.UA({
        sockets: [socket],
        uri: `sip:${cfg.user}@${cfg.domain}`,
        password: cfg.password,
        register: true,
        register_expires: 600,
        session_timers: false,
        user_agent: 'switchboard-browser-test JsSIP',
      });
      ua.on('connected', () => emit('connected'));
      ua.on('disconnected', () => emit('disconnected'));
      ua.on('registered', () => emit('registered'));
      ua.on('unregistered', () => emit('unregistered'));
      ua.on('registrationFailed', (e) => emit('registrationFailed', { cause: e.cause }));
      ua.on('newRTCSession', (e) => {
        follow(e.session);
        if (e.originator === 'remote') {
          emit('incoming', { from: e.request.from.uri.user });
          e.session.answer({ mediaConstraints: { audio: true, video: false } });
        }
      });
      ua.start();
    },
    /** Calls `number` in the phone's domain. */
    call(number) {
      ua.call(`sip:${number}@${domain}`, {
        mediaConstraints: { audio: true, video: false },
        pcConfig: { iceServers: [] },
      });
    },
    /** Hangs up the call in progress. */
    hangup() {
      if (session) session.terminate();
    },
    /** Unregisters (REGISTER with Expires: 0). */
    unregister() {
      ua.unregister();
    },
  };
})();
