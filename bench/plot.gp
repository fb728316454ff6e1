# plot.gp - the benchmark's plots, from the data files bench/run.py writes.
# gnuplot -e "outdir='DIR'; titles='cfg1 cfg2 ...'; memlabel='1G'; totalrate=0" plot.gp
# Data files (in outdir): first column x, then one column per configuration
# (median over the repetitions; '?' = no verified data point).

set terminal pngcairo size 900,560 font "sans,11" noenhanced
set datafile missing "?"
set key outside right top
set grid
n = words(titles)
set style line 1 lc rgb "#1b7837" lw 2 pt 7 ps 1.3
set style line 2 lc rgb "#762a83" lw 2 pt 5 ps 1.3
set style line 3 lc rgb "#5aae61" lw 2 pt 9 ps 1.3 dt 2
set style line 4 lc rgb "#9970ab" lw 2 pt 11 ps 1.3 dt 2
set style line 5 lc rgb "#c2a5cf" lw 2 pt 13 ps 1.3 dt 3
# keep a configuration's colour whatever subset ran
style(t) = (t eq "kvmove-default") ? 1 : (t eq "qemu-default") ? 2 : \
           (t eq "kvmove-300ms") ? 3 : (t eq "qemu-tuned") ? 4 : 5

set output outdir."/downtime_vs_rate.png"
set title "Guest-observed downtime vs dirty rate (".memlabel." RAM, median)"
set xlabel "dirty rate set in the guest (MiB/s)"
set ylabel "guest-observed downtime (ms, log)"
set logscale y
plot for [i=1:n] outdir."/downtime.dat" using 0:(column(i+1)):xtic(1) \
     with linespoints ls style(word(titles,i)) title word(titles,i)
unset logscale y

set output outdir."/bytes_vs_rate.png"
set title "Bytes sent vs dirty rate (".memlabel." RAM, median)"
set ylabel "bytes on the wire (GiB)"
set yrange [0:*]
plot for [i=1:n] outdir."/bytes.dat" using 0:(column(i+1)):xtic(1) \
     with linespoints ls style(word(titles,i)) title word(titles,i)

set output outdir."/total_vs_ram.png"
set title sprintf("Total migration time vs guest RAM (dirty rate %d MiB/s, median)", totalrate)
set xlabel "guest RAM (GiB; working set 75 %)"
set ylabel "total time (s)"
set yrange [0:*]
plot for [i=1:n] outdir."/total.dat" using 1:(column(i+1)):xtic(1) \
     with linespoints ls style(word(titles,i)) title word(titles,i)
