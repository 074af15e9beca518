# Kamailio as bench/register runs it (sourced by run.sh and callgrind.sh; needs lib.sh's die).
#
# kamailio_config DIR IP PORT USERS_DIR: writes DIR/kamailio.cfg from kamailio.cfg.tmpl (and the
# users' db_text table it loads) and checks it with `kamailio -c`.
kamailio_config() {
	local dir=$1 ip=$2 port=$3 users=$4
	mkdir -p "$dir" && cp -r "$users/dbtext" "$dir/" || return 1
	sed -e "s|@IP@|$ip|g; s|@PORT@|$port|g; s|@DIR@|$dir|g" \
		"$BENCH_DIR_LIB/register/kamailio.cfg.tmpl" >"$dir/kamailio.cfg" || return 1
	if ! kamailio -f "$dir/kamailio.cfg" -c >"$dir/check.log" 2>&1; then
		cat "$dir/check.log" >&2
		return 1
	fi
}

# kamailio_args DIR MEM: the command line of Kamailio on DIR's config, in the foreground, with
# memory manager MEM (-x: tlsf as production runs it; qm is its debugging-friendly default).
kamailio_args() {
	local dir=$1 mem=$2
	KAMAILIO_ARGS=(kamailio -f "$dir/kamailio.cfg" -DD -E -m 512 -M 16 -x "$mem" -Y "$dir" -w "$dir"
		-P "$dir/kamailio.pid")
}
