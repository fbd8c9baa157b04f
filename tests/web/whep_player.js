// Entry for the test bundle: the published player, unchanged, as window.WebRTCPlayer.
import { WebRTCPlayer } from "@eyevinn/webrtc-player";

window.WebRTCPlayer = WebRTCPlayer;
