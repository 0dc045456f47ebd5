// <video> and <audio> elements that play a MediaStream. The stream is not a DOM attribute: it is
// handed to the element through a ref (srcObject, set in a layout effect) and only when the
// track or stream changes, so a re-render never re-creates the element or restarts playback (a
// new <video> would flicker and lose its decoded frames). Unmounting lets the stream go.
// Shared by the call panel and the patient's page (no case UI in here).
import { useLayoutEffect, useRef } from 'preact/hooks';
import type { AudioHTMLAttributes, VideoHTMLAttributes } from 'preact';

/** A track is wrapped in a stream of its own; a stream is used as is; null shows nothing. */
export type StreamSource = MediaStream | MediaStreamTrack | null;

function useSrcObject<T extends HTMLMediaElement>(source: StreamSource) {
  const ref = useRef<T>(null);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.srcObject = source instanceof MediaStreamTrack ? new MediaStream([source]) : source;
    return () => {
      el.srcObject = null;
    };
  }, [source]);
  return ref;
}

type VideoProps = Omit<VideoHTMLAttributes<HTMLVideoElement>, 'ref'> & { source: StreamSource };
type AudioProps = Omit<AudioHTMLAttributes<HTMLAudioElement>, 'ref'> & { source: StreamSource };

export function StreamVideo({ source, ...props }: VideoProps) {
  const ref = useSrcObject<HTMLVideoElement>(source);
  return <video {...props} ref={ref} />;
}

export function StreamAudio({ source, ...props }: AudioProps) {
  const ref = useSrcObject<HTMLAudioElement>(source);
  return <audio {...props} ref={ref} />;
}
